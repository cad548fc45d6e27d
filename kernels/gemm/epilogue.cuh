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

// Deterministic split-K for an AddFloat output (no atomics on c, so the residual stream is bitwise reproducible and
// does not depend on which split finishes first): each split stores its raw sums to p.split_partials
// [splits][M][N]; then alpha·Σ + bias is added to c, the splits summed in order — in the skinny kernel by the block
// that finishes an output tile last (a ticket on p.split_counters[tile], reset for the next launch), after the
// wgmma kernel by a kernel of its own.
__device__ __forceinline__ void storeSplitPartial(const GemmParams& p, int split, int m, int n, float acc) {
  __stcg(p.split_partials + (int64_t(split) * p.M + m) * p.N + n, acc);
}

// One thread per block, after every thread stored its partials, ran __threadfence() and met a barrier.
__device__ __forceinline__ bool takeLastTicket(const GemmParams& p, int tile, int splits) {
  const bool last = atomicAdd(p.split_counters + tile, 1u) == unsigned(splits - 1);
  if (last) p.split_counters[tile] = 0;  // every split has taken its ticket by now
  return last;
}

// alpha·sum + bias[n], what a split AddFloat output adds to c[m, n] once its parts are summed: one function wherever
// the parts were summed (the fixup, or the wgmma block that folds all its parts itself), so every path gives the same
// bits.
__device__ __forceinline__ float foldedIncrement(const GemmParams& p, int n, float sum) {
  return p.alpha * sum + (p.bias ? p.bias[n] : 0.f);
}

__device__ __forceinline__ void addFoldedSum(const GemmParams& p, int m, int n, float sum) {
  static_cast<float*>(p.c)[int64_t(m) * p.ldc + n] += foldedIncrement(p, n, sum);
}

__device__ __forceinline__ void addSplitPartials(const GemmParams& p, int splits, int m, int n) {
  float sum = 0.f;
  for (int s = 0; s < splits; ++s) sum += __ldcg(p.split_partials + (int64_t(s) * p.M + m) * p.N + n);
  addFoldedSum(p, m, n, sum);
}

// The most splits of K a launch of `tiles` output tiles may use: what p's split workspace holds (1 without one).
inline int splitCapacity(const GemmParams& p, int64_t tiles) {
  if (!p.split_partials || !p.split_counters || tiles > p.split_counter_count) return 1;
  const int64_t fit = int64_t(p.split_partial_floats / (size_t(p.M) * size_t(p.N)));
  return fit < 1 ? 1 : int(fit < (1 << 20) ? fit : (1 << 20));
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
