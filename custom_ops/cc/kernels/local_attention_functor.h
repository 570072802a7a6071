// Device-templated functors of the GFLA local-attention op family.
//
// The OpKernels in local_attention_kernels.cc validate the inputs, allocate the outputs and
// call one of these functors; the CPU specialisations live next to the kernels and the GPU
// ones forward to the framework-free CUDA launchers declared below (implemented in
// local_attention_kernels.cu.cc on top of local_attention_cuda.cuh).

#ifndef GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_FUNCTOR_H_
#define GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_FUNCTOR_H_

#include "local_attention_common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace gfla {

// output[B, H, W, C] = sum_n attention[..., n] * block[..., n, :] / k^2.
template <typename Device, typename T>
struct LocalAttentionFunctor {
  void operator()(::tensorflow::OpKernelContext* ctx, const Geometry& g, const T* source,
                  const T* flow, const T* attention, T* output);
};

// Gradients of LocalAttentionFunctor; every output is fully overwritten.
template <typename Device, typename T>
struct LocalAttentionGradFunctor {
  void operator()(::tensorflow::OpKernelContext* ctx, const Geometry& g, const T* grad,
                  const T* source, const T* flow, const T* attention, T* grad_source,
                  T* grad_flow, T* grad_attention);
};

// block[B, H, W, k*k, C]: the sampled taps.
template <typename Device, typename T>
struct BlockExtractFunctor {
  void operator()(::tensorflow::OpKernelContext* ctx, const Geometry& g, const T* source,
                  const T* flow, T* block);
};

// Gradients of BlockExtractFunctor; every output is fully overwritten.
template <typename Device, typename T>
struct BlockExtractGradFunctor {
  void operator()(::tensorflow::OpKernelContext* ctx, const Geometry& g, const T* grad,
                  const T* source, const T* flow, T* grad_source, T* grad_flow);
};

#if GOOGLE_CUDA
// Framework-free CUDA launchers (local_attention_kernels.cu.cc). `stream` is a
// cudaStream_t. They return nullptr on success, else a static CUDA error string.
namespace cuda {
template <typename T>
const char* LocalAttentionForward(void* stream, const Geometry& g, const T* source,
                                  const T* flow, const T* attention, T* output);
template <typename T>
const char* LocalAttentionBackward(void* stream, const Geometry& g, const T* grad,
                                   const T* source, const T* flow, const T* attention,
                                   T* grad_source, T* grad_flow, T* grad_attention);
template <typename T>
const char* BlockExtractForward(void* stream, const Geometry& g, const T* source,
                                const T* flow, T* block);
template <typename T>
const char* BlockExtractBackward(void* stream, const Geometry& g, const T* grad,
                                 const T* source, const T* flow, T* grad_source,
                                 T* grad_flow);
}  // namespace cuda
#endif  // GOOGLE_CUDA

}  // namespace gfla

#endif  // GFLA_CUSTOM_OPS_KERNELS_LOCAL_ATTENTION_FUNCTOR_H_
