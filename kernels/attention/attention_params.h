// Parameters of the attention kernels (one plain struct per kernel, as in FlashAttention).
// Layouts are given by element strides so the same kernels read q from a projection buffer and k/v from
// the KV cache without copies. ALiBi is computed in registers from `alibi_slopes`: bias = slope_h * (j - i)
// for key position j and query position i (absolute positions), never a materialized mask.
//
// Requirements, checked on entry (cudaErrorInvalidValue otherwise; nothing is launched): dtype F16 or BF16,
// head_dim 64 or 128, the head_dim axis contiguous, every pointer 16-byte aligned and every stride a multiple
// of 8 elements (rows are moved as 16-byte vectors), sequence lengths below 2^24, batch and n_heads at most
// 65535. Both entry points return the launch's cudaError_t and never abort. fp32 softmax and accumulation.
// CPU reference: attention_ref.h; same-precision yardstick: naive_attention.h; harness: dev/attention.cu.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "kernels/kv/paged_kv.h"

namespace flashmpt {

// F32 only for the naive kernel (naive_attention.h); the fused kernels take F16 and BF16.
enum class AttnDType : int { F32 = 0, F16 = 1, BF16 = 2 };

// Prefill / extend: seqlen_q queries against seqlen_k keys per (batch, head). With causal, query i (0-based)
// sits at absolute position seqlen_k - seqlen_q + i and sees keys j <= that position (bottom-right aligned),
// so the same kernel serves a fresh prompt (seqlen_q == seqlen_k) and a chunk appended to a cached prefix.
// Rows that see no key (seqlen_q > seqlen_k) are written as 0. seqlen_k >= 1; batch, heads or seqlen_q of 0
// is a no-op.
struct FlashAttentionParams {
  const void* q; const void* k; const void* v; void* o;  // dtype elements
  int64_t q_batch_stride, q_row_stride, q_head_stride;
  int64_t k_batch_stride, k_row_stride, k_head_stride;
  int64_t v_batch_stride, v_row_stride, v_head_stride;
  int64_t o_batch_stride, o_row_stride, o_head_stride;
  int batch, n_heads, seqlen_q, seqlen_k, head_dim;  // head_dim 64 or 128
  float softmax_scale;
  const float* alibi_slopes;  // device, n_heads floats; nullptr: no ALiBi
  bool causal;
  AttnDType dtype;
  // Packed fresh prompts (optional, device [batch] each): batch entry b is rows seg_row0[b] .. seg_row0[b] +
  // seg_len[b] − 1 of q, k, v and o (batch strides unused), with seqlen_q = seqlen_k = seg_len[b]; seqlen_q =
  // seqlen_k ≤ kFlashShortQueries then bound every seg_len (they size the grid). Each prompt gets the bits of a
  // launch of its own (the short-prompt tile either way).
  const int* seg_row0 = nullptr;
  const int* seg_len = nullptr;
};
cudaError_t flash_attention_prefill(const FlashAttentionParams& params, cudaStream_t stream);
// Up to this many queries (seqlen_q) a prefill launch runs the short-prompt tile, past it the long one.
constexpr int kFlashShortQueries = 1024;

// The new token of an engine decode step, straight from the Wqkv projection: the decode kernel then does the QKV
// epilogue's work for it (kernels/qkv/qkv_epilogue.h: clip, split, QK-LayerNorm over the full d_model, fp32
// statistics), writes its key and value into the cache at position seq_len[b] − 1 and attends to them from
// registers, so the step needs no epilogue kernel. DecodeAttentionParams::q is then unused.
struct DecodeNewToken {
  const void* qkv = nullptr;     // [batch][3 · n_heads · head_dim] dtype: q, k, v of each row's new token
  const int* positions = nullptr;  // device [batch]: negative for a padding row (attends, caches nothing)
  const float* q_ln_weight = nullptr;  // [n_heads · head_dim]; nullptr: no QK-LayerNorm
  const float* q_ln_bias = nullptr;
  const float* k_ln_weight = nullptr;
  const float* k_ln_bias = nullptr;
  float clip = 0.f;  // <= 0: no clipping
  float eps = 1e-5f;
};

// Decode: one query per (batch, head) against that sequence's cached keys, split over the key axis
// (flash-decoding) with a log-sum-exp merge. The query is at absolute position seq_len[b] - 1.
struct DecodeAttentionParams {
  const void* q;  // [batch][n_heads][head_dim], contiguous
  void* o;        // [batch][n_heads][head_dim], contiguous
  // Key (b, pos) at k_cache + kv.sequence(b).offset(pos) + h*head_stride (paged or contiguous: paged_kv.h).
  // seq_len, the block table and the cached keys and values are read before the programmatic wait (pdl): the
  // kernel launched just before this one must not write them (the engine's is the Wqkv projection).
  const void* k_cache; const void* v_cache;
  KvLayout kv;
  const int* seq_len;  // device [batch]: keys to attend, the new token included (clamped to max_seq_len; 0 -> o = 0)
  int64_t head_stride;
  int batch, n_heads, head_dim, max_seq_len;  // max_seq_len bounds seq_len (sizes the split grid)
  float softmax_scale;
  const float* alibi_slopes;  // device or nullptr
  float* workspace;  // decode_attention_workspace_floats(...) floats, contents arbitrary:
                     // partial outputs and LSEs of the splits (about 2 MB at batch 1, 16 heads x 128)
  unsigned* split_counters;  // device [batch][n_heads], zero before the call and left zero after it
  DecodeNewToken new_token;  // qkv nullptr: q and the cache hold everything
  AttnDType dtype;
  bool pdl;  // programmatic dependent launch on sm_90+ (kernels/common/pdl.cuh)
};
size_t decode_attention_workspace_floats(int batch, int n_heads, int head_dim, int max_seq_len);
cudaError_t decode_attention(const DecodeAttentionParams& params, cudaStream_t stream);

}  // namespace flashmpt
