// The sampler's view of a logits row, computed on the GPU: the k largest logits (descending, ties to the lower
// id; the first is the argmax) with their ids, and the log-sum-exp of the row (so top-K probabilities are
// exp(value − lse) without copying the row to the host). NaN counts as −inf in both, as the sampler reads it. Only the row's first `vocab` entries
// take part, so a caller masks a tail of ids by passing a smaller vocab than the row stride.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace flashmpt {

constexpr int kTopKMax = 1024;

struct TopKParams {
  const float* logits = nullptr;  // [rows, vocab], row stride row_stride floats
  int64_t row_stride = 0;
  int rows = 0, vocab = 0;
  int k = 0;                   // 1 ≤ k ≤ kTopKMax and k ≤ vocab
  float* values = nullptr;     // [rows, k]
  int32_t* indices = nullptr;  // [rows, k]
  float* lse = nullptr;        // [rows] or nullptr
  float* workspace = nullptr;  // topKWorkspaceFloats(rows, vocab, k) floats
};

size_t topKWorkspaceFloats(int rows, int vocab, int k);
cudaError_t topK(const TopKParams& params, cudaStream_t stream);

}  // namespace flashmpt
