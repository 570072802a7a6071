// Framework-free CUDA kernels of the GFLA local-attention op family.
//
// Only the CUDA runtime and local_attention_common.h are included, so this header compiles
// with plain nvcc: local_attention_kernels.cu.cc instantiates it for TensorFlow and
// benchmarks/gpu/harness.cu for the standalone correctness and bandwidth check.
//
// Layout is NHWC throughout. Forward kernels use one thread per output element with the
// channel index fastest, so neighbouring threads read neighbouring source channels
// (coalesced). Backward kernels use one warp per target position: lanes stride over the
// channels, the per-tap dot products are reduced with warp shuffles, and the source
// gradient is scatter-added with atomics (grad_source is zeroed first).

#ifndef GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_CUDA_CUH_
#define GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_CUDA_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "local_attention_common.h"

namespace gfla {
namespace cuda {

template <typename T>
struct DeviceAcc {
  using type = float;
};
template <>
struct DeviceAcc<double> {
  using type = double;
};

constexpr int kThreads = 256;

inline unsigned int BlocksFor(int64_t work_items) {
  int64_t blocks = (work_items + kThreads - 1) / kThreads;
  // Grid-stride loops cover the rest; this cap only bounds the launch size.
  if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
  return static_cast<unsigned int>(blocks < 1 ? 1 : blocks);
}

template <typename A>
__device__ __forceinline__ A WarpSum(A v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Decomposes a flat target position into (b, y, x) and returns the batch image offset.
__device__ __forceinline__ void SplitPosition(const Geometry& g, int64_t p, int64_t* b,
                                              int64_t* y, int64_t* x) {
  *x = p % g.width;
  const int64_t row = p / g.width;
  *y = row % g.height;
  *b = row / g.height;
}

template <typename T>
__global__ void LocalAttentionForwardKernel(Geometry g, const T* __restrict__ source,
                                            const T* __restrict__ flow,
                                            const T* __restrict__ attention,
                                            T* __restrict__ output) {
  using A = typename DeviceAcc<T>::type;
  const int64_t C = g.channels, kk = g.taps();
  const int64_t total = g.pixels() * C;
  const int half = g.kernel_size / 2;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t c = idx % C, p = idx / C;
    int64_t b, y, x;
    SplitPosition(g, p, &b, &y, &x);
    const A base_x = static_cast<A>(x) + static_cast<A>(flow[2 * p]);
    const A base_y = static_cast<A>(y) + static_cast<A>(flow[2 * p + 1]);
    const int64_t image = b * g.src_height * g.src_width * C;
    A acc = 0;
    for (int i = 0; i < g.kernel_size; ++i) {
      const AxisTap<A> ty = MakeAxisTap<A>(base_y, i - half, g.src_height);
      for (int j = 0; j < g.kernel_size; ++j) {
        const AxisTap<A> tx = MakeAxisTap<A>(base_x, j - half, g.src_width);
        const Tap2D<A> t = MakeTap2D<A>(ty, tx, image, g.src_width, C);
        const int64_t n = static_cast<int64_t>(i) * g.kernel_size + j;
        const A a = static_cast<A>(attention[p * kk + n]);
        acc += a * (t.w00 * static_cast<A>(source[t.off00 + c]) +
                    t.w01 * static_cast<A>(source[t.off01 + c]) +
                    t.w10 * static_cast<A>(source[t.off10 + c]) +
                    t.w11 * static_cast<A>(source[t.off11 + c]));
      }
    }
    output[idx] = static_cast<T>(acc / static_cast<A>(kk));
  }
}

template <typename T>
__global__ void BlockExtractForwardKernel(Geometry g, const T* __restrict__ source,
                                          const T* __restrict__ flow, T* __restrict__ block) {
  using A = typename DeviceAcc<T>::type;
  const int64_t C = g.channels, kk = g.taps();
  const int64_t total = g.pixels() * kk * C;
  const int half = g.kernel_size / 2;
  const A one = static_cast<A>(1);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t c = idx % C;
    const int64_t n = (idx / C) % kk;
    const int64_t p = idx / (C * kk);
    int64_t b, y, x;
    SplitPosition(g, p, &b, &y, &x);
    const A base_x = static_cast<A>(x) + static_cast<A>(flow[2 * p]);
    const A base_y = static_cast<A>(y) + static_cast<A>(flow[2 * p + 1]);
    const int i = static_cast<int>(n / g.kernel_size), j = static_cast<int>(n % g.kernel_size);
    const AxisTap<A> ty = MakeAxisTap<A>(base_y, i - half, g.src_height);
    const AxisTap<A> tx = MakeAxisTap<A>(base_x, j - half, g.src_width);
    const Tap2D<A> t =
        MakeTap2D<A>(ty, tx, b * g.src_height * g.src_width * C, g.src_width, C);
    const A top = static_cast<A>(source[t.off00 + c]) * (one - t.wx) +
                  static_cast<A>(source[t.off01 + c]) * t.wx;
    const A bottom = static_cast<A>(source[t.off10 + c]) * (one - t.wx) +
                     static_cast<A>(source[t.off11 + c]) * t.wx;
    block[idx] = static_cast<T>(top * (one - t.wy) + bottom * t.wy);
  }
}

// grad_attention and grad_flow are written for every position; grad_source must be zero.
template <typename T>
__global__ void LocalAttentionBackwardKernel(Geometry g, const T* __restrict__ grad,
                                             const T* __restrict__ source,
                                             const T* __restrict__ flow,
                                             const T* __restrict__ attention,
                                             T* __restrict__ grad_source,
                                             T* __restrict__ grad_flow,
                                             T* __restrict__ grad_attention) {
  using A = typename DeviceAcc<T>::type;
  const int64_t C = g.channels, kk = g.taps();
  const int half = g.kernel_size / 2;
  const A inv = static_cast<A>(1) / static_cast<A>(kk);
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t p = warp; p < g.pixels(); p += warps) {
    int64_t b, y, x;
    SplitPosition(g, p, &b, &y, &x);
    const A base_x = static_cast<A>(x) + static_cast<A>(flow[2 * p]);
    const A base_y = static_cast<A>(y) + static_cast<A>(flow[2 * p + 1]);
    const int64_t image = b * g.src_height * g.src_width * C;
    const T* gp = grad + p * C;
    A gfx = 0, gfy = 0;
    for (int i = 0; i < g.kernel_size; ++i) {
      const AxisTap<A> ty = MakeAxisTap<A>(base_y, i - half, g.src_height);
      for (int j = 0; j < g.kernel_size; ++j) {
        const int64_t n = static_cast<int64_t>(i) * g.kernel_size + j;
        const AxisTap<A> tx = MakeAxisTap<A>(base_x, j - half, g.src_width);
        const Tap2D<A> t = MakeTap2D<A>(ty, tx, image, g.src_width, C);
        const A a = static_cast<A>(attention[p * kk + n]) * inv;
        const A s00 = a * t.w00, s01 = a * t.w01, s10 = a * t.w10, s11 = a * t.w11;
        A d00 = 0, d01 = 0, d10 = 0, d11 = 0;
        for (int64_t c = lane; c < C; c += 32) {
          const A gv = static_cast<A>(gp[c]);
          d00 += gv * static_cast<A>(source[t.off00 + c]);
          d01 += gv * static_cast<A>(source[t.off01 + c]);
          d10 += gv * static_cast<A>(source[t.off10 + c]);
          d11 += gv * static_cast<A>(source[t.off11 + c]);
          atomicAdd(grad_source + t.off00 + c, static_cast<T>(s00 * gv));
          atomicAdd(grad_source + t.off01 + c, static_cast<T>(s01 * gv));
          atomicAdd(grad_source + t.off10 + c, static_cast<T>(s10 * gv));
          atomicAdd(grad_source + t.off11 + c, static_cast<T>(s11 * gv));
        }
        d00 = WarpSum(d00);
        d01 = WarpSum(d01);
        d10 = WarpSum(d10);
        d11 = WarpSum(d11);
        if (lane == 0) {
          grad_attention[p * kk + n] =
              static_cast<T>(inv * (t.w00 * d00 + t.w01 * d01 + t.w10 * d10 + t.w11 * d11));
        }
        A dx, dy;
        CoordinateGrads<A>(t, d00, d01, d10, d11, &dx, &dy);
        gfx += a * dx;
        gfy += a * dy;
      }
    }
    if (lane == 0) {
      grad_flow[2 * p] = static_cast<T>(gfx);
      grad_flow[2 * p + 1] = static_cast<T>(gfy);
    }
  }
}

template <typename T>
__global__ void BlockExtractBackwardKernel(Geometry g, const T* __restrict__ grad,
                                           const T* __restrict__ source,
                                           const T* __restrict__ flow,
                                           T* __restrict__ grad_source,
                                           T* __restrict__ grad_flow) {
  using A = typename DeviceAcc<T>::type;
  const int64_t C = g.channels, kk = g.taps();
  const int half = g.kernel_size / 2;
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t p = warp; p < g.pixels(); p += warps) {
    int64_t b, y, x;
    SplitPosition(g, p, &b, &y, &x);
    const A base_x = static_cast<A>(x) + static_cast<A>(flow[2 * p]);
    const A base_y = static_cast<A>(y) + static_cast<A>(flow[2 * p + 1]);
    const int64_t image = b * g.src_height * g.src_width * C;
    A gfx = 0, gfy = 0;
    for (int i = 0; i < g.kernel_size; ++i) {
      const AxisTap<A> ty = MakeAxisTap<A>(base_y, i - half, g.src_height);
      for (int j = 0; j < g.kernel_size; ++j) {
        const int64_t n = static_cast<int64_t>(i) * g.kernel_size + j;
        const AxisTap<A> tx = MakeAxisTap<A>(base_x, j - half, g.src_width);
        const Tap2D<A> t = MakeTap2D<A>(ty, tx, image, g.src_width, C);
        const T* gp = grad + (p * kk + n) * C;
        A d00 = 0, d01 = 0, d10 = 0, d11 = 0;
        for (int64_t c = lane; c < C; c += 32) {
          const A gv = static_cast<A>(gp[c]);
          d00 += gv * static_cast<A>(source[t.off00 + c]);
          d01 += gv * static_cast<A>(source[t.off01 + c]);
          d10 += gv * static_cast<A>(source[t.off10 + c]);
          d11 += gv * static_cast<A>(source[t.off11 + c]);
          atomicAdd(grad_source + t.off00 + c, static_cast<T>(t.w00 * gv));
          atomicAdd(grad_source + t.off01 + c, static_cast<T>(t.w01 * gv));
          atomicAdd(grad_source + t.off10 + c, static_cast<T>(t.w10 * gv));
          atomicAdd(grad_source + t.off11 + c, static_cast<T>(t.w11 * gv));
        }
        d00 = WarpSum(d00);
        d01 = WarpSum(d01);
        d10 = WarpSum(d10);
        d11 = WarpSum(d11);
        A dx, dy;
        CoordinateGrads<A>(t, d00, d01, d10, d11, &dx, &dy);
        gfx += dx;
        gfy += dy;
      }
    }
    if (lane == 0) {
      grad_flow[2 * p] = static_cast<T>(gfx);
      grad_flow[2 * p + 1] = static_cast<T>(gfy);
    }
  }
}

inline const char* LastError() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// Launchers: `stream` is a cudaStream_t; nullptr means success, else a CUDA error string.

template <typename T>
const char* LocalAttentionForward(void* stream, const Geometry& g, const T* source,
                                  const T* flow, const T* attention, T* output) {
  const int64_t total = g.pixels() * g.channels;
  if (total == 0) return nullptr;
  LocalAttentionForwardKernel<T><<<BlocksFor(total), kThreads, 0,
                                   static_cast<cudaStream_t>(stream)>>>(g, source, flow,
                                                                        attention, output);
  return LastError();
}

template <typename T>
const char* BlockExtractForward(void* stream, const Geometry& g, const T* source,
                                const T* flow, T* block) {
  const int64_t total = g.pixels() * g.taps() * g.channels;
  if (total == 0) return nullptr;
  BlockExtractForwardKernel<T><<<BlocksFor(total), kThreads, 0,
                                 static_cast<cudaStream_t>(stream)>>>(g, source, flow, block);
  return LastError();
}

template <typename T>
const char* LocalAttentionBackward(void* stream, const Geometry& g, const T* grad,
                                   const T* source, const T* flow, const T* attention,
                                   T* grad_source, T* grad_flow, T* grad_attention) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t source_size = g.batch * g.src_height * g.src_width * g.channels;
  if (source_size > 0) {
    const cudaError_t err = cudaMemsetAsync(grad_source, 0, sizeof(T) * source_size, s);
    if (err != cudaSuccess) return cudaGetErrorString(err);
  }
  if (g.pixels() == 0) return nullptr;
  LocalAttentionBackwardKernel<T><<<BlocksFor(g.pixels() * 32), kThreads, 0, s>>>(
      g, grad, source, flow, attention, grad_source, grad_flow, grad_attention);
  return LastError();
}

template <typename T>
const char* BlockExtractBackward(void* stream, const Geometry& g, const T* grad,
                                 const T* source, const T* flow, T* grad_source,
                                 T* grad_flow) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t source_size = g.batch * g.src_height * g.src_width * g.channels;
  if (source_size > 0) {
    const cudaError_t err = cudaMemsetAsync(grad_source, 0, sizeof(T) * source_size, s);
    if (err != cudaSuccess) return cudaGetErrorString(err);
  }
  if (g.pixels() == 0) return nullptr;
  BlockExtractBackwardKernel<T><<<BlocksFor(g.pixels() * 32), kThreads, 0, s>>>(
      g, grad, source, flow, grad_source, grad_flow);
  return LastError();
}

}  // namespace cuda
}  // namespace gfla

#endif  // GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_CUDA_CUH_
