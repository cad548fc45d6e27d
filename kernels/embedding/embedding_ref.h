// CPU reference of kernels/embedding/embedding.cu: out[r, :] = table[ids[r], :].
#pragma once
#include <algorithm>
#include <cstdint>

namespace flashmpt::ref {

inline void embeddingGather(const int32_t* ids, int64_t rows, const float* table, int64_t d_model, float* out) {
  for (int64_t r = 0; r < rows; ++r) std::copy(table + ids[r] * d_model, table + (ids[r] + 1) * d_model, out + r * d_model);
}

}  // namespace flashmpt::ref
