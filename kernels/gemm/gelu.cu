// Standalone exact GELU (the GEMM fuses the same function into its epilogue; this one serves tests and the
// tensor API).
#include <cuda_runtime.h>

#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/gemm/epilogue.cuh"
#include "kernels/gemm/gemm.h"

namespace flashmpt {
namespace {

template <class T>
__global__ void geluKernel(const T* x, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = fromFloat<T>(geluErf(toFloat<T>(x[i])));
  }
}

}  // namespace

cudaError_t gelu(const GeluParams& p, cudaStream_t stream) {
  if (p.n <= 0) return p.n == 0 ? cudaSuccess : cudaErrorInvalidValue;
  return switchAny(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    const int64_t blocks = (p.n + 255) / 256;
    geluKernel<T><<<unsigned(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(static_cast<const T*>(p.x),
                                                                                  static_cast<T*>(p.y), p.n);
    return cudaGetLastError();
  });
}

}  // namespace flashmpt
