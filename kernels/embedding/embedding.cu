#include <cuda_runtime.h>

#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/embedding/embedding.h"

namespace flashmpt {
namespace {

template <class T>
__global__ void embeddingKernel(const EmbeddingParams p) {
  const T* src = static_cast<const T*>(p.table) + int64_t(p.ids[blockIdx.x]) * p.d_model;
  float* dst = p.out + int64_t(blockIdx.x) * p.d_model;
  for (int i = threadIdx.x; i < p.d_model; i += blockDim.x) dst[i] = toFloat<T>(src[i]);
}

}  // namespace

cudaError_t embeddingGather(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.d_model <= 0 || !p.ids || !p.table || !p.out) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  return switchAny(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    embeddingKernel<T><<<p.rows, 256, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace flashmpt
