// OpKernels of the GFLA local-attention op family and their CPU functors.
//
// CPU strategy: the forward passes write disjoint outputs, so they are sharded over
// (batch, row) with the TF thread pool. The backward passes scatter-add into the source
// gradient; they are sharded over batch items when there are enough of them, otherwise
// every shard accumulates into a private copy of its image's gradient and the copies are
// summed afterwards. Inner loops run over the contiguous channel axis so that they
// vectorise. Accumulation happens in float for half and float, in double for double.

#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "local_attention_functor.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/overflow.h"
#include "tensorflow/core/util/work_sharder.h"

#if GOOGLE_CUDA
#include "unsupported/Eigen/CXX11/Tensor"
#endif

#ifndef GFLA_BUILT_FOR_TF
#define GFLA_BUILT_FOR_TF "unknown"
#endif
#ifndef GFLA_BUILD_TOOL
#define GFLA_BUILD_TOOL "unknown"
#endif

#if defined(_OPENMP) || defined(GFLA_OPENMP_SIMD)
#define GFLA_SIMD _Pragma("omp simd")
// Names the accumulators of Dot4.
#define GFLA_SIMD_REDUCE_DOTS _Pragma("omp simd reduction(+ : d00, d01, d10, d11)")
#else
#define GFLA_SIMD
#define GFLA_SIMD_REDUCE_DOTS
#endif

namespace gfla {

using ::tensorflow::DataTypeToEnum;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using CPUDevice = Eigen::ThreadPoolDevice;
#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;
#endif

namespace {

// Accumulation type: float for half and float, double for double.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

template <typename T>
using Acc = typename AccType<T>::type;

int NumThreads(OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
}

::tensorflow::thread::ThreadPool* Workers(OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->workers;
}

// Shard cost of one unit: the product of `factors`, saturated so that absurd sizes cannot
// overflow the cost arithmetic (real workloads stay far below the cap).
int64_t CostPerUnit(std::initializer_list<int64_t> factors) {
  constexpr int64_t kMaxCost = int64_t{1} << 40;
  int64_t cost = 1;
  for (const int64_t f : factors) {
    cost = ::tensorflow::MultiplyWithoutOverflow(cost, f);
    if (cost < 0 || cost > kMaxCost) return kMaxCost;
  }
  return std::max<int64_t>(1, cost);
}

// Computes the k axis taps of one target position along y and x.
template <typename A, typename T>
void PositionTaps(const Geometry& g, const T* flow, int64_t p, int64_t y, int64_t x,
                  AxisTap<A>* ty, AxisTap<A>* tx) {
  const A base_x = static_cast<A>(x) + static_cast<A>(flow[2 * p]);
  const A base_y = static_cast<A>(y) + static_cast<A>(flow[2 * p + 1]);
  const int half = g.kernel_size / 2;
  for (int i = 0; i < g.kernel_size; ++i) {
    ty[i] = MakeAxisTap<A>(base_y, i - half, g.src_height);
    tx[i] = MakeAxisTap<A>(base_x, i - half, g.src_width);
  }
}

// acc[c] += w00 v00[c] + w01 v01[c] + w10 v10[c] + w11 v11[c].
template <typename A, typename T>
inline void Blend4(A* __restrict acc, const T* v00, const T* v01, const T* v10, const T* v11,
                   A w00, A w01, A w10, A w11, int64_t n) {
  GFLA_SIMD
  for (int64_t c = 0; c < n; ++c) {
    acc[c] += w00 * static_cast<A>(v00[c]) + w01 * static_cast<A>(v01[c]) +
              w10 * static_cast<A>(v10[c]) + w11 * static_cast<A>(v11[c]);
  }
}

// The four dot products <g, v_ab>.
template <typename A, typename T>
inline void Dot4(const A* __restrict g, const T* v00, const T* v01, const T* v10, const T* v11,
                 int64_t n, A* out) {
  A d00 = 0, d01 = 0, d10 = 0, d11 = 0;
  GFLA_SIMD_REDUCE_DOTS
  for (int64_t c = 0; c < n; ++c) {
    d00 += g[c] * static_cast<A>(v00[c]);
    d01 += g[c] * static_cast<A>(v01[c]);
    d10 += g[c] * static_cast<A>(v10[c]);
    d11 += g[c] * static_cast<A>(v11[c]);
  }
  out[0] = d00;
  out[1] = d01;
  out[2] = d10;
  out[3] = d11;
}

// Scatters s * w_ab * g into the four taps of `dst`; taps may coincide at the border.
template <typename A>
inline void Scatter4(A* dst, const Tap2D<A>& t, int64_t image_offset, const A* __restrict g,
                     A s, int64_t n) {
  A* p00 = dst + (t.off00 - image_offset);
  A* p01 = dst + (t.off01 - image_offset);
  A* p10 = dst + (t.off10 - image_offset);
  A* p11 = dst + (t.off11 - image_offset);
  const A w00 = s * t.w00, w01 = s * t.w01, w10 = s * t.w10, w11 = s * t.w11;
  if (t.off00 != t.off01 && t.off10 != t.off11 && t.off00 != t.off10) {
    A* __restrict q00 = p00;
    A* __restrict q01 = p01;
    A* __restrict q10 = p10;
    A* __restrict q11 = p11;
    GFLA_SIMD
    for (int64_t c = 0; c < n; ++c) {
      const A v = g[c];
      q00[c] += w00 * v;
      q01[c] += w01 * v;
      q10[c] += w10 * v;
      q11[c] += w11 * v;
    }
    return;
  }
  // Clamped taps share memory: accumulate one after the other.
  A* ptrs[4] = {p00, p01, p10, p11};
  const A ws[4] = {w00, w01, w10, w11};
  for (int q = 0; q < 4; ++q) {
    A* __restrict d = ptrs[q];
    const A w = ws[q];
    GFLA_SIMD
    for (int64_t c = 0; c < n; ++c) d[c] += w * g[c];
  }
}

// Runs `rows(b, y_begin, y_end, dst)` over every target row, where `dst` is the
// [Hs, Ws, C] accumulation buffer (type Acc<T>) of batch item b, then stores the summed
// buffers into grad_source. See the file comment for the strategy.
template <typename T, typename RowFn>
void ScatterShards(OpKernelContext* ctx, const Geometry& g, T* grad_source, RowFn rows) {
  using A = Acc<T>;
  const int64_t image = g.src_height * g.src_width * g.channels;
  const int64_t total = g.batch * image;
  if (total == 0) return;
  const int threads = std::max(1, NumThreads(ctx));
  int64_t splits = 1;
  if (g.batch < threads && g.height > 1) {
    splits = std::min<int64_t>({g.height, (threads + g.batch - 1) / g.batch, 16});
  }
  const int64_t row_cost = CostPerUnit({g.width, g.taps(), g.channels, 16});
  const bool direct = splits == 1 && std::is_same<T, A>::value;
  if (direct) {
    A* dst = reinterpret_cast<A*>(grad_source);
    std::memset(dst, 0, sizeof(A) * total);
    ::tensorflow::Shard(threads, Workers(ctx), g.batch, CostPerUnit({row_cost, g.height}),
                        [&](int64_t begin, int64_t end) {
                          for (int64_t b = begin; b < end; ++b) {
                            rows(b, 0, g.height, dst + b * image);
                          }
                        });
    return;
  }
  // batch * splits private copies of one image's gradient.
  const int64_t buffer_size = ::tensorflow::MultiplyWithoutOverflow(total, splits);
  OP_REQUIRES(ctx, buffer_size >= 0,
              ::tensorflow::errors::InvalidArgument(
                  "source gradient accumulation buffer of ", splits, " x ", total,
                  " elements has more than 2**63 - 1 elements"));
  Tensor buffer;
  OP_REQUIRES_OK(ctx, ctx->allocate_temp(DataTypeToEnum<A>::value, TensorShape({buffer_size}),
                                         &buffer));
  A* buf = buffer.flat<A>().data();
  const int64_t units = g.batch * splits;
  ::tensorflow::Shard(threads, Workers(ctx), units, CostPerUnit({row_cost, g.height}) / splits,
                      [&](int64_t begin, int64_t end) {
                        for (int64_t u = begin; u < end; ++u) {
                          A* dst = buf + u * image;
                          std::memset(dst, 0, sizeof(A) * image);
                          const int64_t b = u / splits, r = u % splits;
                          rows(b, g.height * r / splits, g.height * (r + 1) / splits, dst);
                        }
                      });
  ::tensorflow::Shard(threads, Workers(ctx), total, 2 * splits, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t b = e / image, i = e % image;
      const A* src = buf + b * splits * image + i;
      A sum = 0;
      for (int64_t r = 0; r < splits; ++r) sum += src[r * image];
      grad_source[e] = static_cast<T>(sum);
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------
// CPU functors.

template <typename T>
struct LocalAttentionFunctor<CPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* source, const T* flow,
                  const T* attention, T* output) {
    using A = Acc<T>;
    const int64_t C = g.channels, kk = g.taps();
    const int k = g.kernel_size;
    const A inv = static_cast<A>(1) / static_cast<A>(kk);
    const int64_t image = g.src_height * g.src_width * C;
    const int64_t row_cost = CostPerUnit({g.width, kk, C, 8});
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<A> acc(C);
      std::vector<AxisTap<A>> ty(k), tx(k);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / g.height, y = row % g.height;
        for (int64_t x = 0; x < g.width; ++x) {
          const int64_t p = row * g.width + x;
          PositionTaps<A>(g, flow, p, y, x, ty.data(), tx.data());
          std::fill(acc.begin(), acc.end(), static_cast<A>(0));
          const T* att = attention + p * kk;
          for (int i = 0; i < k; ++i) {
            for (int j = 0; j < k; ++j) {
              const Tap2D<A> t = MakeTap2D<A>(ty[i], tx[j], b * image, g.src_width, C);
              const A a = static_cast<A>(att[static_cast<int64_t>(i) * k + j]);
              Blend4<A, T>(acc.data(), source + t.off00, source + t.off01, source + t.off10,
                           source + t.off11, a * t.w00, a * t.w01, a * t.w10, a * t.w11, C);
            }
          }
          T* out = output + p * C;
          for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(acc[c] * inv);
        }
      }
    };
    ::tensorflow::Shard(NumThreads(ctx), Workers(ctx), g.batch * g.height, row_cost, work);
  }
};

template <typename T>
struct LocalAttentionGradFunctor<CPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* grad, const T* source,
                  const T* flow, const T* attention, T* grad_source, T* grad_flow,
                  T* grad_attention) {
    using A = Acc<T>;
    const int64_t C = g.channels, kk = g.taps();
    const int k = g.kernel_size;
    const A inv = static_cast<A>(1) / static_cast<A>(kk);
    const int64_t image = g.src_height * g.src_width * C;
    auto rows = [&](int64_t b, int64_t y_begin, int64_t y_end, A* dst) {
      std::vector<A> gbuf(C);
      std::vector<AxisTap<A>> ty(k), tx(k);
      A d[4];
      for (int64_t y = y_begin; y < y_end; ++y) {
        for (int64_t x = 0; x < g.width; ++x) {
          const int64_t p = (b * g.height + y) * g.width + x;
          PositionTaps<A>(g, flow, p, y, x, ty.data(), tx.data());
          const T* gp = grad + p * C;
          for (int64_t c = 0; c < C; ++c) gbuf[c] = static_cast<A>(gp[c]);
          const T* att = attention + p * kk;
          A gfx = 0, gfy = 0;
          for (int i = 0; i < k; ++i) {
            for (int j = 0; j < k; ++j) {
              const int64_t n = static_cast<int64_t>(i) * k + j;
              const Tap2D<A> t = MakeTap2D<A>(ty[i], tx[j], b * image, g.src_width, C);
              Dot4<A, T>(gbuf.data(), source + t.off00, source + t.off01, source + t.off10,
                         source + t.off11, C, d);
              const A a = static_cast<A>(att[n]) * inv;
              grad_attention[p * kk + n] = static_cast<T>(
                  inv * (t.w00 * d[0] + t.w01 * d[1] + t.w10 * d[2] + t.w11 * d[3]));
              A dx, dy;
              CoordinateGrads<A>(t, d[0], d[1], d[2], d[3], &dx, &dy);
              gfx += a * dx;
              gfy += a * dy;
              Scatter4<A>(dst, t, b * image, gbuf.data(), a, C);
            }
          }
          grad_flow[2 * p] = static_cast<T>(gfx);
          grad_flow[2 * p + 1] = static_cast<T>(gfy);
        }
      }
    };
    // Also zeroes grad_source when there is no target position to scatter from.
    ScatterShards<T>(ctx, g, grad_source, rows);
  }
};

template <typename T>
struct BlockExtractFunctor<CPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* source, const T* flow,
                  T* block) {
    using A = Acc<T>;
    const int64_t C = g.channels, kk = g.taps();
    const int k = g.kernel_size;
    const int64_t image = g.src_height * g.src_width * C;
    const int64_t row_cost = CostPerUnit({g.width, kk, C, 6});
    const A one = static_cast<A>(1);
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<AxisTap<A>> ty(k), tx(k);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / g.height, y = row % g.height;
        for (int64_t x = 0; x < g.width; ++x) {
          const int64_t p = row * g.width + x;
          PositionTaps<A>(g, flow, p, y, x, ty.data(), tx.data());
          for (int i = 0; i < k; ++i) {
            for (int j = 0; j < k; ++j) {
              const Tap2D<A> t = MakeTap2D<A>(ty[i], tx[j], b * image, g.src_width, C);
              const T* v00 = source + t.off00;
              const T* v01 = source + t.off01;
              const T* v10 = source + t.off10;
              const T* v11 = source + t.off11;
              T* __restrict out = block + (p * kk + static_cast<int64_t>(i) * k + j) * C;
              const A wx = t.wx, wy = t.wy;
              // Same association as the reference: lerp along x, then along y.
              GFLA_SIMD
              for (int64_t c = 0; c < C; ++c) {
                const A top = static_cast<A>(v00[c]) * (one - wx) + static_cast<A>(v01[c]) * wx;
                const A bottom =
                    static_cast<A>(v10[c]) * (one - wx) + static_cast<A>(v11[c]) * wx;
                out[c] = static_cast<T>(top * (one - wy) + bottom * wy);
              }
            }
          }
        }
      }
    };
    ::tensorflow::Shard(NumThreads(ctx), Workers(ctx), g.batch * g.height, row_cost, work);
  }
};

template <typename T>
struct BlockExtractGradFunctor<CPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* grad, const T* source,
                  const T* flow, T* grad_source, T* grad_flow) {
    using A = Acc<T>;
    const int64_t C = g.channels, kk = g.taps();
    const int k = g.kernel_size;
    const int64_t image = g.src_height * g.src_width * C;
    auto rows = [&](int64_t b, int64_t y_begin, int64_t y_end, A* dst) {
      std::vector<A> gbuf(C);
      std::vector<AxisTap<A>> ty(k), tx(k);
      A d[4];
      for (int64_t y = y_begin; y < y_end; ++y) {
        for (int64_t x = 0; x < g.width; ++x) {
          const int64_t p = (b * g.height + y) * g.width + x;
          PositionTaps<A>(g, flow, p, y, x, ty.data(), tx.data());
          A gfx = 0, gfy = 0;
          for (int i = 0; i < k; ++i) {
            for (int j = 0; j < k; ++j) {
              const T* gp = grad + (p * kk + static_cast<int64_t>(i) * k + j) * C;
              for (int64_t c = 0; c < C; ++c) gbuf[c] = static_cast<A>(gp[c]);
              const Tap2D<A> t = MakeTap2D<A>(ty[i], tx[j], b * image, g.src_width, C);
              Dot4<A, T>(gbuf.data(), source + t.off00, source + t.off01, source + t.off10,
                         source + t.off11, C, d);
              A dx, dy;
              CoordinateGrads<A>(t, d[0], d[1], d[2], d[3], &dx, &dy);
              gfx += dx;
              gfy += dy;
              Scatter4<A>(dst, t, b * image, gbuf.data(), static_cast<A>(1), C);
            }
          }
          grad_flow[2 * p] = static_cast<T>(gfx);
          grad_flow[2 * p + 1] = static_cast<T>(gfy);
        }
      }
    };
    ScatterShards<T>(ctx, g, grad_source, rows);
  }
};

// ---------------------------------------------------------------------------------------
// GPU functors: thin wrappers over the framework-free CUDA launchers.

#if GOOGLE_CUDA
namespace {
void* StreamOf(OpKernelContext* ctx) {
  return static_cast<void*>(ctx->eigen_device<GPUDevice>().stream());
}
// The backward kernels launch one warp (32 threads) per target position.
bool CheckWarpLaunch(OpKernelContext* ctx, const Geometry& g, const char* what) {
  if (::tensorflow::MultiplyWithoutOverflow(g.pixels(), 32) >= 0) return true;
  ctx->SetStatus(::tensorflow::errors::InvalidArgument(
      what, ": ", g.pixels(), " target positions are too many for one CUDA launch"));
  return false;
}
void CheckLaunch(OpKernelContext* ctx, const char* error, const char* what) {
  if (error != nullptr) {
    ctx->SetStatus(::tensorflow::errors::Internal(what, " CUDA launch failed: ", error));
  }
}
}  // namespace

template <typename T>
struct LocalAttentionFunctor<GPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* source, const T* flow,
                  const T* attention, T* output) {
    CheckLaunch(ctx, cuda::LocalAttentionForward<T>(StreamOf(ctx), g, source, flow, attention,
                                                    output),
                "GflaLocalAttention");
  }
};

template <typename T>
struct LocalAttentionGradFunctor<GPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* grad, const T* source,
                  const T* flow, const T* attention, T* grad_source, T* grad_flow,
                  T* grad_attention) {
    if (!CheckWarpLaunch(ctx, g, "GflaLocalAttentionGrad")) return;
    CheckLaunch(ctx,
                cuda::LocalAttentionBackward<T>(StreamOf(ctx), g, grad, source, flow, attention,
                                                grad_source, grad_flow, grad_attention),
                "GflaLocalAttentionGrad");
  }
};

template <typename T>
struct BlockExtractFunctor<GPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* source, const T* flow,
                  T* block) {
    CheckLaunch(ctx, cuda::BlockExtractForward<T>(StreamOf(ctx), g, source, flow, block),
                "GflaBlockExtract");
  }
};

template <typename T>
struct BlockExtractGradFunctor<GPUDevice, T> {
  void operator()(OpKernelContext* ctx, const Geometry& g, const T* grad, const T* source,
                  const T* flow, T* grad_source, T* grad_flow) {
    if (!CheckWarpLaunch(ctx, g, "GflaBlockExtractGrad")) return;
    CheckLaunch(ctx,
                cuda::BlockExtractBackward<T>(StreamOf(ctx), g, grad, source, flow, grad_source,
                                              grad_flow),
                "GflaBlockExtractGrad");
  }
};
#endif  // GOOGLE_CUDA

// ---------------------------------------------------------------------------------------
// Input validation shared by the four kernels.

namespace {

// Validates source [B, Hs, Ws, C], flow [B, H, W, 2] and (when given) attention
// [B, H, W, k*k]; fills `g`. On failure sets an InvalidArgument status on `ctx`.
void ValidateInputs(OpKernelContext* ctx, int kernel_size, const Tensor& source,
                    const Tensor& flow, const Tensor* attention, Geometry* g) {
  const int64_t taps = static_cast<int64_t>(kernel_size) * kernel_size;
  OP_REQUIRES(ctx, kernel_size >= 1,
              ::tensorflow::errors::InvalidArgument("kernel_size must be an integer >= 1, got ",
                                                    kernel_size));
  OP_REQUIRES(ctx, source.dims() == 4,
              ::tensorflow::errors::InvalidArgument(
                  "source must have rank 4 [batch, height, width, channels], got shape ",
                  source.shape().DebugString()));
  OP_REQUIRES(ctx, flow.dims() == 4,
              ::tensorflow::errors::InvalidArgument(
                  "flow must have rank 4 [batch, height, width, 2], got shape ",
                  flow.shape().DebugString()));
  OP_REQUIRES(ctx, flow.dim_size(3) == 2,
              ::tensorflow::errors::InvalidArgument(
                  "flow must have 2 channels (x, y) in its last dimension, got shape ",
                  flow.shape().DebugString()));
  OP_REQUIRES(ctx, source.dim_size(0) == flow.dim_size(0),
              ::tensorflow::errors::InvalidArgument(
                  "batch mismatch: source has batch ", source.dim_size(0),
                  " but flow has batch ", flow.dim_size(0)));
  if (attention != nullptr) {
    OP_REQUIRES(ctx, attention->dims() == 4,
                ::tensorflow::errors::InvalidArgument(
                    "attention must have rank 4 [batch, height, width, ", taps,
                    "], got shape ", attention->shape().DebugString()));
    OP_REQUIRES(ctx, attention->dim_size(3) == taps,
                ::tensorflow::errors::InvalidArgument(
                    "attention must have kernel_size**2 = ", taps, " channels, got shape ",
                    attention->shape().DebugString()));
    const char* names[3] = {"batch", "height", "width"};
    for (int axis = 0; axis < 3; ++axis) {
      OP_REQUIRES(ctx, attention->dim_size(axis) == flow.dim_size(axis),
                  ::tensorflow::errors::InvalidArgument(
                      names[axis], " mismatch: attention has shape ",
                      attention->shape().DebugString(), " but flow has shape ",
                      flow.shape().DebugString()));
    }
  }
  g->batch = flow.dim_size(0);
  g->height = flow.dim_size(1);
  g->width = flow.dim_size(2);
  g->src_height = source.dim_size(1);
  g->src_width = source.dim_size(2);
  g->channels = source.dim_size(3);
  g->kernel_size = kernel_size;
  // Sampling an empty image would read out of bounds.
  OP_REQUIRES(ctx,
              g->pixels() == 0 || g->channels == 0 || (g->src_height > 0 && g->src_width > 0),
              ::tensorflow::errors::InvalidArgument(
                  "source must have height and width >= 1 when flow has positions to sample, "
                  "got shape ",
                  source.shape().DebugString()));
}

// Builds a forward output shape with TensorShape's overflow checks; the message is the one
// of the Python validation and of the shape functions.
::tensorflow::Status OutputShape(const char* op, std::initializer_list<int64_t> dims,
                                 TensorShape* out) {
  if (TensorShape::BuildTensorShape(dims, out).ok()) return ::tensorflow::Status();
  std::string sizes;
  for (const int64_t size : dims) sizes += (sizes.empty() ? "" : ", ") + std::to_string(size);
  return ::tensorflow::errors::InvalidArgument(op, " output shape [", sizes,
                                               "] has more than 2**63 - 1 elements");
}

// [B, H, W, C].
::tensorflow::Status LocalAttentionOutputShape(const Geometry& g, TensorShape* out) {
  return OutputShape("local_attention", {g.batch, g.height, g.width, g.channels}, out);
}

// [B, H, W, k*k, C].
::tensorflow::Status BlockExtractOutputShape(const Geometry& g, TensorShape* out) {
  return OutputShape("block_extract", {g.batch, g.height, g.width, g.taps(), g.channels}, out);
}

// Checks that the upstream gradient has the forward output's shape.
void ValidateGrad(OpKernelContext* ctx, const Tensor& grad, const TensorShape& expected) {
  OP_REQUIRES(ctx, grad.shape() == expected,
              ::tensorflow::errors::InvalidArgument("grad must have shape ",
                                                    expected.DebugString(), ", got shape ",
                                                    grad.shape().DebugString()));
}

}  // namespace

// OP_REQUIRES returns from the helper only; the kernels stop when the status is not ok.
#define GFLA_RETURN_IF_FAILED(ctx) \
  if (!(ctx)->status().ok()) return

template <typename Device, typename T>
class LocalAttentionOp : public OpKernel {
 public:
  explicit LocalAttentionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &kernel_size_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& source = ctx->input(0);
    const Tensor& flow = ctx->input(1);
    const Tensor& attention = ctx->input(2);
    Geometry g;
    ValidateInputs(ctx, kernel_size_, source, flow, &attention, &g);
    GFLA_RETURN_IF_FAILED(ctx);
    TensorShape output_shape;
    OP_REQUIRES_OK(ctx, LocalAttentionOutputShape(g, &output_shape));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, output_shape, &output));
    if (output->NumElements() == 0) return;
    LocalAttentionFunctor<Device, T>()(ctx, g, source.flat<T>().data(), flow.flat<T>().data(),
                                       attention.flat<T>().data(), output->flat<T>().data());
  }

 private:
  int kernel_size_;
};

template <typename Device, typename T>
class LocalAttentionGradOp : public OpKernel {
 public:
  explicit LocalAttentionGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &kernel_size_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    const Tensor& source = ctx->input(1);
    const Tensor& flow = ctx->input(2);
    const Tensor& attention = ctx->input(3);
    Geometry g;
    ValidateInputs(ctx, kernel_size_, source, flow, &attention, &g);
    GFLA_RETURN_IF_FAILED(ctx);
    TensorShape output_shape;
    OP_REQUIRES_OK(ctx, LocalAttentionOutputShape(g, &output_shape));
    ValidateGrad(ctx, grad, output_shape);
    GFLA_RETURN_IF_FAILED(ctx);
    Tensor *grad_source = nullptr, *grad_flow = nullptr, *grad_attention = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, source.shape(), &grad_source));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, flow.shape(), &grad_flow));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, attention.shape(), &grad_attention));
    if (grad_source->NumElements() == 0 && grad_flow->NumElements() == 0) return;
    LocalAttentionGradFunctor<Device, T>()(
        ctx, g, grad.flat<T>().data(), source.flat<T>().data(), flow.flat<T>().data(),
        attention.flat<T>().data(), grad_source->flat<T>().data(), grad_flow->flat<T>().data(),
        grad_attention->flat<T>().data());
  }

 private:
  int kernel_size_;
};

template <typename Device, typename T>
class BlockExtractOp : public OpKernel {
 public:
  explicit BlockExtractOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &kernel_size_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& source = ctx->input(0);
    const Tensor& flow = ctx->input(1);
    Geometry g;
    ValidateInputs(ctx, kernel_size_, source, flow, nullptr, &g);
    GFLA_RETURN_IF_FAILED(ctx);
    TensorShape block_shape;
    OP_REQUIRES_OK(ctx, BlockExtractOutputShape(g, &block_shape));
    Tensor* block = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, block_shape, &block));
    if (block->NumElements() == 0) return;
    BlockExtractFunctor<Device, T>()(ctx, g, source.flat<T>().data(), flow.flat<T>().data(),
                                     block->flat<T>().data());
  }

 private:
  int kernel_size_;
};

template <typename Device, typename T>
class BlockExtractGradOp : public OpKernel {
 public:
  explicit BlockExtractGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &kernel_size_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    const Tensor& source = ctx->input(1);
    const Tensor& flow = ctx->input(2);
    Geometry g;
    ValidateInputs(ctx, kernel_size_, source, flow, nullptr, &g);
    GFLA_RETURN_IF_FAILED(ctx);
    TensorShape block_shape;
    OP_REQUIRES_OK(ctx, BlockExtractOutputShape(g, &block_shape));
    ValidateGrad(ctx, grad, block_shape);
    GFLA_RETURN_IF_FAILED(ctx);
    Tensor *grad_source = nullptr, *grad_flow = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, source.shape(), &grad_source));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, flow.shape(), &grad_flow));
    if (grad_source->NumElements() == 0 && grad_flow->NumElements() == 0) return;
    BlockExtractGradFunctor<Device, T>()(ctx, g, grad.flat<T>().data(), source.flat<T>().data(),
                                         flow.flat<T>().data(), grad_source->flat<T>().data(),
                                         grad_flow->flat<T>().data());
  }

 private:
  int kernel_size_;
};

// Reports how the library was built; the Python loader reads it for status().
class BuildInfoOp : public OpKernel {
 public:
  explicit BuildInfoOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &out));
    std::string info = "{\"tf_version\": \"" GFLA_BUILT_FOR_TF "\", \"build_tool\": \"" GFLA_BUILD_TOOL
                       "\", \"cuda\": ";
#if GOOGLE_CUDA
    info += "true";
#else
    info += "false";
#endif
    info += ", \"compiler\": \"" __VERSION__ "\"}";
    out->scalar<::tensorflow::tstring>()() = info;
  }
};

#define GFLA_REGISTER_KERNELS(DEVICE_NAME, DEVICE, T)                               \
  REGISTER_KERNEL_BUILDER(                                                          \
      Name("GflaLocalAttention").Device(DEVICE_NAME).TypeConstraint<T>("T"),        \
      LocalAttentionOp<DEVICE, T>);                                                 \
  REGISTER_KERNEL_BUILDER(                                                          \
      Name("GflaLocalAttentionGrad").Device(DEVICE_NAME).TypeConstraint<T>("T"),    \
      LocalAttentionGradOp<DEVICE, T>);                                             \
  REGISTER_KERNEL_BUILDER(Name("GflaBlockExtract").Device(DEVICE_NAME).TypeConstraint<T>("T"), \
                          BlockExtractOp<DEVICE, T>);                               \
  REGISTER_KERNEL_BUILDER(                                                          \
      Name("GflaBlockExtractGrad").Device(DEVICE_NAME).TypeConstraint<T>("T"),      \
      BlockExtractGradOp<DEVICE, T>);

GFLA_REGISTER_KERNELS(::tensorflow::DEVICE_CPU, CPUDevice, Eigen::half)
GFLA_REGISTER_KERNELS(::tensorflow::DEVICE_CPU, CPUDevice, float)
GFLA_REGISTER_KERNELS(::tensorflow::DEVICE_CPU, CPUDevice, double)
#if GOOGLE_CUDA
GFLA_REGISTER_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, float)
GFLA_REGISTER_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, double)
#endif

REGISTER_KERNEL_BUILDER(Name("GflaBuildInfo").Device(::tensorflow::DEVICE_CPU), BuildInfoOp);

}  // namespace gfla
