// One CUDA graph per decode batch-size bucket (1, 2, 4, … kDecodeRows). A bucket's first step runs eagerly
// (module loading and lazy attribute setup happen outside any capture); its second step captures the launches
// and every later step re-launches the graph. Per-step inputs live in device buffers that the caller updates
// with cudaMemcpyAsync before the launch, so the graph never changes.
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <functional>

#include "csrc/engine/cuda/forward.h"

namespace flashmpt {

class DecodeGraphs {
 public:
  static constexpr int kBuckets = 7;  // 1 … 64
  static_assert(1 << (kBuckets - 1) == kDecodeRows, "buckets cover the decode rows");

  DecodeGraphs() = default;
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  static int bucketRows(int rows);  // the smallest bucket holding `rows`

  // Runs `enqueue(bucketRows)` on `stream`: eagerly, or through the bucket's graph.
  void run(int bucket_rows, cudaStream_t stream, const std::function<void(int)>& enqueue);
  // Drops every graph: the next run of each bucket is eager again, then captures what enqueue does by then.
  void reset();

 private:
  struct Bucket {
    int runs = 0;
    cudaGraphExec_t exec = nullptr;
  };
  std::array<Bucket, kBuckets> buckets_{};
};

}  // namespace flashmpt
