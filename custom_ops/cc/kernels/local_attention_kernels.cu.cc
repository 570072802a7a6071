// CUDA kernels of the GFLA local-attention ops, instantiated for TensorFlow.
//
// Deliberately free of TensorFlow headers: it only instantiates the launchers of
// local_attention_cuda.cuh, so it compiles with any nvcc regardless of the CUDA version
// TensorFlow was built with. local_attention_kernels.cc calls them from the GPU functors.

#if GOOGLE_CUDA

#include "local_attention_cuda.cuh"

namespace gfla {
namespace cuda {

#define GFLA_INSTANTIATE(T)                                                                  \
  template const char* LocalAttentionForward<T>(void*, const Geometry&, const T*, const T*, \
                                                const T*, T*);                               \
  template const char* LocalAttentionBackward<T>(void*, const Geometry&, const T*, const T*, \
                                                 const T*, const T*, T*, T*, T*);            \
  template const char* BlockExtractForward<T>(void*, const Geometry&, const T*, const T*, T*); \
  template const char* BlockExtractBackward<T>(void*, const Geometry&, const T*, const T*,   \
                                               const T*, T*, T*);

GFLA_INSTANTIATE(float)
GFLA_INSTANTIATE(double)

#undef GFLA_INSTANTIATE

}  // namespace cuda
}  // namespace gfla

#endif  // GOOGLE_CUDA
