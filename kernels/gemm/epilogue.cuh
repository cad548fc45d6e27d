// The GEMM epilogue shared by the tiled, wgmma and skinny kernels: v = alpha·acc + bias[n], optionally the exact
// (erf) GELU, then a store in the compute dtype, a store in fp32, or an in-place fp32 residual update.
#pragma once
#include <cstdint>

#include "kernels/common/half.cuh"
#include "kernels/gemm/gemm.h"

namespace flashmpt {

__device__ __forceinline__ float geluErf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752440f)); }

template <GemmOut OUT>
__device__ __forceinline__ float epilogueValue(const GemmParams& p, int n, float acc) {
  float v = p.alpha * acc;
  if (p.bias) v += p.bias[n];
  if constexpr (OUT == GemmOut::HalfGelu) v = geluErf(v);
  return v;
}

template <class T, GemmOut OUT>
__device__ __forceinline__ void epilogueStore(const GemmParams& p, int m, int n, float acc) {
  const float v = epilogueValue<OUT>(p, n, acc);
  const int64_t at = int64_t(m) * p.ldc + n;
  if constexpr (OUT == GemmOut::Half || OUT == GemmOut::HalfGelu) {
    static_cast<T*>(p.c)[at] = fromFloat<T>(v);
  } else if constexpr (OUT == GemmOut::Float) {
    static_cast<float*>(p.c)[at] = v;
  } else {
    static_cast<float*>(p.c)[at] += v;
  }
}

// Columns n and n + 1 of row m (n + 1 may lie past N); one vector access when both exist and are aligned.
template <class T, GemmOut OUT>
__device__ __forceinline__ void epilogueStorePair(const GemmParams& p, int m, int n, float acc0, float acc1) {
  if (n + 1 >= p.N || ((p.ldc | n) & 1) != 0) {
    if (n < p.N) epilogueStore<T, OUT>(p, m, n, acc0);
    if (n + 1 < p.N) epilogueStore<T, OUT>(p, m, n + 1, acc1);
    return;
  }
  const float v0 = epilogueValue<OUT>(p, n, acc0), v1 = epilogueValue<OUT>(p, n + 1, acc1);
  const int64_t at = int64_t(m) * p.ldc + n;
  if constexpr (OUT == GemmOut::Half || OUT == GemmOut::HalfGelu) {
    *reinterpret_cast<uint32_t*>(static_cast<T*>(p.c) + at) = packPair<T>(v0, v1);
  } else if constexpr (OUT == GemmOut::Float) {
    *reinterpret_cast<float2*>(static_cast<float*>(p.c) + at) = make_float2(v0, v1);
  } else {
    float2* c = reinterpret_cast<float2*>(static_cast<float*>(p.c) + at);
    const float2 old = *c;
    *c = make_float2(old.x + v0, old.y + v1);
  }
}

// One split-K block's partial sum added into the fp32 output (AddFloat only); the split that starts at k = 0 adds
// the bias. The order of the additions varies from run to run, so the sum is not bitwise reproducible.
__device__ __forceinline__ void epilogueAddPartial(const GemmParams& p, int m, int n, float acc, bool first) {
  const float bias = first && p.bias ? p.bias[n] : 0.f;
  atomicAdd(static_cast<float*>(p.c) + int64_t(m) * p.ldc + n, p.alpha * acc + bias);
}

// Runs f with GemmOut as a template constant.
template <class F>
cudaError_t switchGemmOut(GemmOut out, F&& f) {
  switch (out) {
    case GemmOut::Half: return f(std::integral_constant<GemmOut, GemmOut::Half>{});
    case GemmOut::HalfGelu: return f(std::integral_constant<GemmOut, GemmOut::HalfGelu>{});
    case GemmOut::Float: return f(std::integral_constant<GemmOut, GemmOut::Float>{});
    case GemmOut::AddFloat: return f(std::integral_constant<GemmOut, GemmOut::AddFloat>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace flashmpt
