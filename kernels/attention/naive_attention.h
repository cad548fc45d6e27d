// A deliberately naive attention: scores materialized, softmax in fp32 over them, O = P V accumulated in fp32
// and rounded to the input dtype. Same params and semantics as flash_attention_prefill; dtype F32, F16 or BF16,
// any head_dim up to 128. Two uses, picked by NaiveScores:
//  - Input: scores (bias added) and P rounded to the input dtype, as PyTorch computes attention in that dtype:
//    the yardstick of FlashAttention's tolerance rule (the fused kernel's max error vs an fp32 reference must be
//    at most 2x this one's).
//  - Float: scores and P kept in fp32, only q, k, v and O in the input dtype: the engine's attention for head
//    dims the fused kernels lack and for its float32 mode. Rounding sharp scores to bf16 moves them by up to
//    2^-9 of their magnitude, enough to flip near-ties, so the engine never does.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "attention_params.h"

namespace flashmpt {

enum class NaiveScores { Input, Float };

// Bytes of scratch naive_attention needs: batch * n_heads * seqlen_q * seqlen_k scores.
size_t naive_attention_scratch_bytes(const FlashAttentionParams& params, NaiveScores scores);
cudaError_t naive_attention(const FlashAttentionParams& params, NaiveScores scores, void* scratch, cudaStream_t stream);

}  // namespace flashmpt
