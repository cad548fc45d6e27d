// CPU reference of kernels/sampling/topk.cu: the k best (value descending, then id ascending) and the
// log-sum-exp of the row in double precision.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace flashmpt::ref {

inline void topK(const float* row, int vocab, int k, float* values, int32_t* indices, float* lse) {
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  for (int i = 0; i < k; ++i) {
    indices[i] = order[size_t(i)];
    values[i] = row[order[size_t(i)]];
  }
  const double max = values[0];
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - max);
  *lse = float(max + std::log(sum));
}

}  // namespace flashmpt::ref
