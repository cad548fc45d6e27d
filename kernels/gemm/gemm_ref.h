// CPU reference of kernels/gemm: c = epilogue(alpha · a·wᵀ + bias) in fp32 over float images of the inputs.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "csrc/engine/cpu/cpu_ops.h"

namespace flashmpt::ref {

enum class GemmEpilogue { Store, Gelu, Accumulate };

// a [m, k], w [n, k], bias [n] or null; c [m, n] is overwritten (Store, Gelu) or added to (Accumulate).
inline void gemm(const float* a, int64_t m, int64_t k, const float* w, int64_t n, const float* bias, float alpha,
                 GemmEpilogue epilogue, float* c) {
  std::vector<float> y(size_t(m * n));
  cpu::linear(a, m, k, w, nullptr, n, y.data(), nullptr);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      float v = alpha * y[size_t(r * n + j)] + (bias ? bias[j] : 0.f);
      if (epilogue == GemmEpilogue::Gelu) v = 0.5f * v * (1.f + std::erf(v * 0.70710678118654752440f));
      c[r * n + j] = epilogue == GemmEpilogue::Accumulate ? c[r * n + j] + v : v;
    }
  }
}

}  // namespace flashmpt::ref
