// CPU reference of kernels/sampling/topk.cu: the k best (value descending, then id ascending) and the
// log-sum-exp of the row in double precision, NaN counting as −inf in both. The CPU engine's
// decodeBatchCandidates runs it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace flashmpt::ref {

// The value a logit ranks by: the sampler never picks NaN, and the sort needs a strict weak order.
inline double rankKey(float value) { return std::isnan(value) ? -INFINITY : double(value); }

inline void topK(const float* row, int vocab, int k, float* values, int32_t* indices, float* lse) {
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    const double ka = rankKey(row[a]), kb = rankKey(row[b]);
    return ka > kb || (ka == kb && a < b);
  });
  for (int i = 0; i < k; ++i) {
    indices[i] = order[size_t(i)];
    values[i] = row[order[size_t(i)]];
  }
  const double max = rankKey(values[0]);
  if (max == -INFINITY) {
    *lse = -INFINITY;  // nothing can be sampled
    return;
  }
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(rankKey(row[i]) - max);
  *lse = float(max + std::log(sum));
}

}  // namespace flashmpt::ref
