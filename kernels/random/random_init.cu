#include <cuda_runtime.h>

#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/random/random_init.h"

namespace flashmpt {
namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One thread per pair of elements, as the generator is defined on pairs.
template <class T>
__global__ void randomInitKernel(const RandomInitParams p) {
  const int64_t pairs = (p.n + 1) / 2;
  T* out = static_cast<T*>(p.out);
  for (int64_t pair = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; pair < pairs;
       pair += int64_t(gridDim.x) * blockDim.x) {
    float a = p.mean, b = p.mean;
    if (p.stddev != 0.f) {
      const uint64_t bits = mix64(p.stream + uint64_t(pair + 1) * 0x9e3779b97f4a7c15ull);
      const float u1 = float((bits >> 40) + 1) * 0x1p-24f;  // (0, 1]
      const float u2 = float(bits & 0xffffff) * 0x1p-24f;
      const float radius = p.stddev * sqrtf(-2.f * logf(u1));
      const float angle = 6.28318530717958647692f * u2;
      a += radius * cosf(angle);
      b += radius * sinf(angle);
    }
    out[2 * pair] = fromFloat<T>(a);
    if (2 * pair + 1 < p.n) out[2 * pair + 1] = fromFloat<T>(b);
  }
}

}  // namespace

cudaError_t randomInit(const RandomInitParams& p, cudaStream_t stream) {
  if (p.n < 0 || (p.n > 0 && !p.out)) return cudaErrorInvalidValue;
  if (p.n == 0) return cudaSuccess;
  return switchAny(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    const int64_t blocks = ((p.n + 1) / 2 + 255) / 256;
    randomInitKernel<T><<<unsigned(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace flashmpt
