// CPU reference of kernels/qkv/qkv_epilogue.cu in fp32: clip, split, QK-LayerNorm over the full d_model.
// The cache scatter is plain indexing and is checked by reading the cache back.
#pragma once
#include <algorithm>
#include <cstdint>

#include "csrc/engine/cpu/cpu_ops.h"

namespace flashmpt::ref {

// qkv [rows, 3·d] → q, k, v [rows, d] each. q_ln_weight null: no QK-LayerNorm.
inline void qkvEpilogue(const float* qkv, int64_t rows, int64_t d, float clip, const float* q_ln_weight,
                        const float* q_ln_bias, const float* k_ln_weight, const float* k_ln_bias, float eps, float* q,
                        float* k, float* v) {
  for (int64_t r = 0; r < rows; ++r) {
    float* outs[3] = {q + r * d, k + r * d, v + r * d};
    for (int part = 0; part < 3; ++part) {
      for (int64_t i = 0; i < d; ++i) {
        const float x = qkv[r * 3 * d + part * d + i];
        outs[part][i] = clip > 0.f ? std::min(std::max(x, -clip), clip) : x;
      }
    }
    if (q_ln_weight) {
      cpu::layerNormRow(outs[0], d, q_ln_weight, q_ln_bias, eps, outs[0]);
      cpu::layerNormRow(outs[1], d, k_ln_weight, k_ln_bias, eps, outs[1]);
    }
  }
}

}  // namespace flashmpt::ref
