// One block per token row. q and k are staged in shared memory as fp32 (after the clip) for exact two-pass
// LayerNorm statistics; v goes straight from the projection to the cache.
#include <cuda_runtime.h>

#include "kernels/common/block_reduce.cuh"
#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/qkv/qkv_epilogue.h"

namespace flashmpt {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float clipValue(float v, float clip) {
  return clip > 0.f ? fminf(fmaxf(v, -clip), clip) : v;
}

template <class T>
__global__ void __launch_bounds__(kThreads, 8) qkvEpilogueKernel(const QkvEpilogueParams p) {
  extern __shared__ float qk[];  // [2][d_model]
  __shared__ float scratch[64];
  pdlWait();
  pdlLaunchDependents();
  const int r = blockIdx.x, d = p.d_model;
  const T* in = static_cast<const T*>(p.qkv) + int64_t(r) * 3 * d;
  const int position = p.sequences ? p.positions[r] : p.position0 + r;
  const bool toCache = position >= 0;
  const int64_t cacheRow = toCache ? p.kv.sequence(p.sequences ? p.sequences[r] : 0).offset(position) : 0;
  const int64_t seqRow = int64_t(p.sequences ? r : position) * d;  // k_seq / v_seq

  float qSum = 0.f, kSum = 0.f;
#pragma unroll 2
  for (int i = threadIdx.x; i < d; i += kThreads) {
    const float qv = clipValue(toFloat<T>(in[i]), p.clip);
    const float kv = clipValue(toFloat<T>(in[d + i]), p.clip);
    qk[i] = qv;
    qk[d + i] = kv;
    qSum += qv;
    kSum += kv;
    const T value = fromFloat<T>(clipValue(toFloat<T>(in[2 * d + i]), p.clip));
    if (toCache) static_cast<T*>(p.v_cache)[cacheRow + i] = value;
    if (p.v_seq) static_cast<T*>(p.v_seq)[seqRow + i] = value;
  }

  float qMean = 0.f, kMean = 0.f, qRstd = 1.f, kRstd = 1.f;
  if (p.q_ln_weight) {
    const float2 sums = blockSum2(make_float2(qSum, kSum), scratch);
    qMean = sums.x / d;
    kMean = sums.y / d;
    float qSq = 0.f, kSq = 0.f;
#pragma unroll 2
    for (int i = threadIdx.x; i < d; i += kThreads) {
      const float dq = qk[i] - qMean, dk = qk[d + i] - kMean;
      qSq += dq * dq;
      kSq += dk * dk;
    }
    const float2 squares = blockSum2(make_float2(qSq, kSq), scratch);
    qRstd = rsqrtf(squares.x / d + p.eps);
    kRstd = rsqrtf(squares.y / d + p.eps);
  }

  T* q = static_cast<T*>(p.q) + int64_t(r) * d;
#pragma unroll 2
  for (int i = threadIdx.x; i < d; i += kThreads) {
    float qv = qk[i], kv = qk[d + i];
    if (p.q_ln_weight) {
      qv = (qv - qMean) * qRstd * p.q_ln_weight[i] + (p.q_ln_bias ? p.q_ln_bias[i] : 0.f);
      kv = (kv - kMean) * kRstd * p.k_ln_weight[i] + (p.k_ln_bias ? p.k_ln_bias[i] : 0.f);
    }
    q[i] = fromFloat<T>(qv);
    if (toCache) static_cast<T*>(p.k_cache)[cacheRow + i] = fromFloat<T>(kv);
    if (p.k_seq) static_cast<T*>(p.k_seq)[seqRow + i] = fromFloat<T>(kv);
  }
}

}  // namespace

cudaError_t qkvEpilogue(const QkvEpilogueParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.d_model <= 0 || !p.qkv || !p.q || !p.k_cache || !p.v_cache ||
      (p.q_ln_weight != nullptr) != (p.k_ln_weight != nullptr) || (p.sequences != nullptr) != (p.positions != nullptr) || (p.k_seq != nullptr) != (p.v_seq != nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) return cudaSuccess;
  const size_t smem = size_t(2) * p.d_model * sizeof(float);
  return switchAny(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    if (smem > 48 * 1024) {
      const cudaError_t err =
          cudaFuncSetAttribute(qkvEpilogueKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      if (err != cudaSuccess) return err;
    }
    return launchPdl(p.pdl, qkvEpilogueKernel<T>, dim3(p.rows), dim3(kThreads), smem, stream, p);
  });
}

}  // namespace flashmpt
