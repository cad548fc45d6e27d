#include "attention_ref.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace flashmpt {

void attention_ref(const float* q, const float* k, const float* v, float* o, int batch, int seqlen_q,
                   int seqlen_k, int n_heads, int head_dim, float softmax_scale, const float* alibi_slopes,
                   bool causal) {
  const int64_t rows = int64_t(batch) * seqlen_q * n_heads;
  auto run = [&](int64_t first, int64_t step) {
    std::vector<float> s(seqlen_k);
    for (int64_t r = first; r < rows; r += step) {
      const int h = int(r % n_heads), i = int((r / n_heads) % seqlen_q), b = int(r / n_heads / seqlen_q);
      const float* qr = q + r * head_dim;
      float* orow = o + r * head_dim;
      const int pos = seqlen_k - seqlen_q + i;
      const int n_keys = causal ? std::min(seqlen_k, std::max(pos + 1, 0)) : seqlen_k;
      std::fill(orow, orow + head_dim, 0.f);
      if (n_keys == 0) continue;
      const float slope = alibi_slopes ? alibi_slopes[h] : 0.f;
      float mx = -INFINITY;
      for (int j = 0; j < n_keys; ++j) {
        const float* kr = k + ((int64_t(b) * seqlen_k + j) * n_heads + h) * head_dim;
        float dot = 0.f;
        for (int d = 0; d < head_dim; ++d) dot += qr[d] * kr[d];
        s[j] = dot * softmax_scale + slope * float(j - pos);
        mx = std::max(mx, s[j]);
      }
      float sum = 0.f;
      for (int j = 0; j < n_keys; ++j) {
        s[j] = std::exp(s[j] - mx);
        sum += s[j];
      }
      for (int j = 0; j < n_keys; ++j) {
        const float* vr = v + ((int64_t(b) * seqlen_k + j) * n_heads + h) * head_dim;
        const float w = s[j] / sum;
        for (int d = 0; d < head_dim; ++d) orow[d] += w * vr[d];
      }
    }
  };
  const int64_t n_threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, std::max<int64_t>(rows, 1));
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < n_threads; ++t) pool.emplace_back(run, t, n_threads);
  run(0, n_threads);
  for (auto& th : pool) th.join();
}

}  // namespace flashmpt
