// Framework-free geometry and bilinear tap helpers shared by the CPU and CUDA kernels.
//
// No TensorFlow or CUDA includes: this header is compiled by g++ (CPU kernels), by nvcc
// (CUDA kernels) and by the standalone GPU harness in benchmarks/gpu/.
//
// Sampling contract (identical to gfla_tf/ops/reference.py): a tap coordinate c is clipped
// to [-1, size]; the bilinear fraction is c - floor(c) of the clipped, unclamped value and
// the two tap indices floor(c), floor(c) + 1 are clamped into [0, size - 1] independently
// (border replicate). The clip keeps huge or infinite flows from overflowing the integer
// index; a NaN coordinate keeps a NaN fraction (so the result is NaN) but reads index 0.

#ifndef GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_COMMON_H_
#define GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_COMMON_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define GFLA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GFLA_HOST_DEVICE inline
#endif

namespace gfla {

// Sizes of one call. Flow and attention are [batch, height, width, ...]; the source is
// [batch, src_height, src_width, channels].
struct Geometry {
  int64_t batch = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t src_height = 0;
  int64_t src_width = 0;
  int64_t channels = 0;
  int kernel_size = 1;

  GFLA_HOST_DEVICE int64_t taps() const {
    return static_cast<int64_t>(kernel_size) * kernel_size;
  }
  GFLA_HOST_DEVICE int64_t pixels() const { return batch * height * width; }
};

// One axis of a bilinear tap: the two clamped indices and the weight of the upper one.
template <typename A>
struct AxisTap {
  int64_t lo;
  int64_t hi;
  A frac;
};

// Computes the tap of coordinate base + offset on an axis of `size` pixels. `base` is the
// target position plus the flow, computed by the caller in the same order as the
// reference ((pos + flow) + offset) so that float32 results agree bit for bit.
template <typename A>
GFLA_HOST_DEVICE AxisTap<A> MakeAxisTap(A base, int offset, int64_t size) {
  A c = base + static_cast<A>(offset);
  // Written as two comparisons so that NaN passes through unchanged.
  if (c < static_cast<A>(-1)) c = static_cast<A>(-1);
  if (c > static_cast<A>(size)) c = static_cast<A>(size);
  using std::floor;  // float overload on the host, CUDA's on the device
  const A f = floor(c);
  AxisTap<A> tap;
  tap.frac = c - f;
  // f is in [-1, size] or NaN; converting NaN to an integer is undefined, so map it to 0.
  const int64_t i0 = (f == f) ? static_cast<int64_t>(f) : 0;
  const int64_t last = size - 1;
  tap.lo = i0 < 0 ? 0 : (i0 > last ? last : i0);
  const int64_t i1 = i0 + 1;
  tap.hi = i1 < 0 ? 0 : (i1 > last ? last : i1);
  return tap;
}

// The four source offsets (in elements) and bilinear weights of one 2-D tap.
template <typename A>
struct Tap2D {
  int64_t off00, off01, off10, off11;  // (lo_y, lo_x), (lo_y, hi_x), (hi_y, lo_x), (hi_y, hi_x)
  A wx, wy;                            // fractions along x and y
  A w00, w01, w10, w11;
};

// `image_offset` is the element offset of the batch item in the source tensor.
template <typename A>
GFLA_HOST_DEVICE Tap2D<A> MakeTap2D(const AxisTap<A>& ty, const AxisTap<A>& tx,
                                    int64_t image_offset, int64_t src_width,
                                    int64_t channels) {
  Tap2D<A> t;
  const int64_t row_lo = image_offset + ty.lo * src_width * channels;
  const int64_t row_hi = image_offset + ty.hi * src_width * channels;
  t.off00 = row_lo + tx.lo * channels;
  t.off01 = row_lo + tx.hi * channels;
  t.off10 = row_hi + tx.lo * channels;
  t.off11 = row_hi + tx.hi * channels;
  t.wx = tx.frac;
  t.wy = ty.frac;
  const A one = static_cast<A>(1);
  t.w00 = (one - ty.frac) * (one - tx.frac);
  t.w01 = (one - ty.frac) * tx.frac;
  t.w10 = ty.frac * (one - tx.frac);
  t.w11 = ty.frac * tx.frac;
  return t;
}

// Given the dot products d_ab = <g, v_ab> of an upstream gradient g with the four tap
// vectors, returns the derivatives of <g, sample> w.r.t. the x and y coordinates. Where
// both taps of an axis clamp to the same pixel the differences vanish exactly.
template <typename A>
GFLA_HOST_DEVICE void CoordinateGrads(const Tap2D<A>& t, A d00, A d01, A d10, A d11, A* dx,
                                      A* dy) {
  const A one = static_cast<A>(1);
  *dx = (one - t.wy) * (d01 - d00) + t.wy * (d11 - d10);
  *dy = (one - t.wx) * (d10 - d00) + t.wx * (d11 - d01);
}

}  // namespace gfla

#endif  // GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_COMMON_H_
