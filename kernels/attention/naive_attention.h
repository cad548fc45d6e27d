// A deliberately naive attention in the input precision, the yardstick of FlashAttention's tolerance rule (the
// fused kernel's max error vs an fp32 reference must be at most 2x this one's): scores materialized and
// rounded to the input dtype (bias added before the rounding), softmax in fp32 over those, P rounded to the
// input dtype, O = P V accumulated in fp32 and rounded. Same params and semantics as flash_attention_prefill.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "attention_params.h"

namespace flashmpt {

// Bytes of scratch naive_attention needs: batch * n_heads * seqlen_q * seqlen_k scores of the input dtype.
size_t naive_attention_scratch_bytes(const FlashAttentionParams& params);
cudaError_t naive_attention(const FlashAttentionParams& params, void* scratch, cudaStream_t stream);

}  // namespace flashmpt
