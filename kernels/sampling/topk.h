// The sampler's view of a logits row, computed on the GPU: the k largest logits (descending, ties to the lower
// id; the first is the argmax) with their ids, and the log-sum-exp of the whole row (so top-K probabilities
// are exp(value − lse) without copying the row to the host).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace flashmpt {

constexpr int kTopKMax = 64;

struct TopKParams {
  const float* logits = nullptr;  // [rows, vocab], row stride row_stride floats
  int64_t row_stride = 0;
  int rows = 0, vocab = 0;  // vocab ≤ topKMaxVocab(k)
  int k = 0;                // 1 ≤ k ≤ kTopKMax and k ≤ vocab
  float* values = nullptr;     // [rows, k]
  int32_t* indices = nullptr;  // [rows, k]
  float* lse = nullptr;        // [rows] or nullptr
  float* workspace = nullptr;  // topKWorkspaceFloats(rows, vocab) floats
};

size_t topKWorkspaceFloats(int rows, int vocab);
int topKMaxVocab(int k);
cudaError_t topK(const TopKParams& params, cudaStream_t stream);

}  // namespace flashmpt
