// Naive attention (see naive_attention.h): three plain kernels, one row per CTA; T the input dtype, S the
// dtype of the materialized scores and probabilities (T or float).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include <cstdint>

#include "naive_attention.h"
#include "static_switch.h"

namespace flashmpt {
namespace {

// S[b,h,i,j] = round_S(q_i . k_j * scale + slope * (j - pos_i)), -inf where masked.
template <typename T, typename S>
__global__ void naive_scores(const FlashAttentionParams p, S* scores) {
  __shared__ float q[128];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const T* qr = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride + i * p.q_row_stride;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) q[d] = float(qr[d]);
  __syncthreads();
  const int pos = p.seqlen_k - p.seqlen_q + i;
  const float slope = p.alibi_slopes ? p.alibi_slopes[h] : 0.f;
  S* srow = scores + ((int64_t(b) * p.n_heads + h) * p.seqlen_q + i) * p.seqlen_k;
  for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) {
    const T* kr = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride + j * p.k_row_stride;
    float dot = 0.f;
    for (int d = 0; d < p.head_dim; ++d) dot += q[d] * float(kr[d]);
    const bool masked = p.causal && j > pos;
    srow[j] = S(masked ? -CUDART_INF_F : dot * p.softmax_scale + slope * float(j - pos));
  }
}

// P = round_S(softmax(S)) in place; a row with every key masked becomes 0.
template <typename S>
__global__ void naive_softmax(const FlashAttentionParams p, S* scores) {
  __shared__ float red[32];
  S* srow = scores + (int64_t(blockIdx.x) + int64_t(gridDim.x) * (blockIdx.y + int64_t(gridDim.y) * blockIdx.z)) * p.seqlen_k;
  auto reduce = [&](float x, bool is_max) {
    for (int off = 16; off > 0; off >>= 1) {
      const float y = __shfl_xor_sync(0xffffffffu, x, off);
      x = is_max ? fmaxf(x, y) : x + y;
    }
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    x = red[0];
    for (int w = 1; w < blockDim.x / 32; ++w) x = is_max ? fmaxf(x, red[w]) : x + red[w];
    __syncthreads();
    return x;
  };
  float mx = -CUDART_INF_F;
  for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) mx = fmaxf(mx, float(srow[j]));
  mx = reduce(mx, true);
  if (mx == -CUDART_INF_F) {
    for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) srow[j] = S(0.f);
    return;
  }
  float sum = 0.f;
  for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) sum += expf(float(srow[j]) - mx);
  sum = reduce(sum, false);
  for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) srow[j] = S(expf(float(srow[j]) - mx) / sum);
}

// O[b,i,h,:] = round_T(sum_j P[j] V[j,:]), fp32 accumulation; one thread per output element.
template <typename T, typename S>
__global__ void naive_pv(const FlashAttentionParams p, const S* probs) {
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, d = threadIdx.x;
  const S* prow = probs + ((int64_t(b) * p.n_heads + h) * p.seqlen_q + i) * p.seqlen_k;
  const T* vb = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride + d;
  float acc = 0.f;
  for (int j = 0; j < p.seqlen_k; ++j) acc += float(prow[j]) * float(vb[j * p.v_row_stride]);
  T* o = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride + i * p.o_row_stride;
  o[d] = T(acc);
}

template <typename T, typename S>
cudaError_t launch(const FlashAttentionParams& p, void* scratch, cudaStream_t stream) {
  const dim3 grid(p.seqlen_q, p.n_heads, p.batch);
  S* s = static_cast<S*>(scratch);
  naive_scores<T, S><<<grid, 128, 0, stream>>>(p, s);
  naive_softmax<S><<<grid, 256, 0, stream>>>(p, s);
  naive_pv<T, S><<<grid, p.head_dim, 0, stream>>>(p, s);
  return cudaGetLastError();
}

bool floatScores(const FlashAttentionParams& p, NaiveScores scores) {
  return scores == NaiveScores::Float || p.dtype == AttnDType::F32;
}

}  // namespace

size_t naive_attention_scratch_bytes(const FlashAttentionParams& p, NaiveScores scores) {
  return size_t(p.batch) * p.n_heads * p.seqlen_q * p.seqlen_k * (floatScores(p, scores) ? 4 : 2);
}

cudaError_t naive_attention(const FlashAttentionParams& p, NaiveScores scores, void* scratch, cudaStream_t stream) {
  if ((p.dtype != AttnDType::F32 && p.dtype != AttnDType::F16 && p.dtype != AttnDType::BF16) || p.head_dim <= 0 ||
      p.head_dim > 128 || p.batch <= 0 || p.n_heads <= 0 || p.seqlen_q <= 0 || p.seqlen_k <= 0 || p.n_heads > 65535 ||
      p.batch > 65535 || !scratch)
    return cudaErrorInvalidValue;
  if (p.dtype == AttnDType::F32) return launch<float, float>(p, scratch, stream);
  return DTYPE_SWITCH(p.dtype, T, [&] {
    return floatScores(p, scores) ? launch<T, float>(p, scratch, stream) : launch<T, T>(p, scratch, stream);
  });
}

}  // namespace flashmpt
