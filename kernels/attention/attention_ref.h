// Plain fp32 CPU reference of attention, the semantics every kernel here must match:
//   o[b,i,h,:] = sum_j softmax_j(q_i . k_j * scale + slope_h * (j - pos_i)) v_j
// with pos_i = seqlen_k - seqlen_q + i (bottom-right alignment: a chunk of queries appended after a cached
// prefix), ALiBi only when alibi_slopes is given, and with causal only keys j <= pos_i. A row that sees no key
// (seqlen_q > seqlen_k, causal) is 0. Decode is the case seqlen_q = 1.
#pragma once

namespace flashmpt {

// q, o: [batch][seqlen_q][n_heads][head_dim]; k, v: [batch][seqlen_k][n_heads][head_dim], contiguous.
// alibi_slopes: host array of n_heads floats, or nullptr. Rows are spread over the machine's cores.
void attention_ref(const float* q, const float* k, const float* v, float* o, int batch, int seqlen_q,
                   int seqlen_k, int n_heads, int head_dim, float softmax_scale, const float* alibi_slopes,
                   bool causal);

}  // namespace flashmpt
