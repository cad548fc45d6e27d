// CPU reference of kernels/norm/layernorm.cu in fp32: s = x (+ residual); y = LayerNorm(s).
#pragma once
#include <cstdint>
#include <vector>

#include "csrc/engine/cpu/cpu_ops.h"

namespace flashmpt::ref {

// x_out (may be null) receives s; y receives the normalized rows.
inline void layerNorm(const float* x, const float* residual, int64_t rows, int64_t cols, const float* weight,
                      const float* bias, float eps, float* x_out, float* y) {
  std::vector<float> s(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) s[size_t(i)] = x[r * cols + i] + (residual ? residual[r * cols + i] : 0.f);
    if (x_out) std::copy(s.begin(), s.end(), x_out + r * cols);
    cpu::layerNormRow(s.data(), cols, weight, bias, eps, y + r * cols);
  }
}

}  // namespace flashmpt::ref
