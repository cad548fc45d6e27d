#include "csrc/engine/cuda/decode_graphs.h"

#include "csrc/runtime/cuda_check.h"

namespace flashmpt {
namespace {

int bucketIndex(int rows) {
  int index = 0;
  while ((1 << index) < rows) ++index;
  return index;
}

// Captures enqueue() into an executable graph; a failure ends the capture before it propagates.
cudaGraphExec_t capture(int rows, cudaStream_t stream, const std::function<void(int)>& enqueue) {
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue(rows);
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_CHECK(err);
  return exec;
}

}  // namespace

DecodeGraphs::~DecodeGraphs() { reset(); }

void DecodeGraphs::reset() {
  for (Bucket& b : buckets_) {
    if (b.exec) cudaGraphExecDestroy(b.exec);
    b = Bucket{};
  }
}

int DecodeGraphs::bucketRows(int rows) { return 1 << bucketIndex(rows); }

void DecodeGraphs::run(int bucket_rows, cudaStream_t stream, const std::function<void(int)>& enqueue) {
  Bucket& b = buckets_[size_t(bucketIndex(bucket_rows))];
  if (b.runs++ == 0) {
    enqueue(bucket_rows);
    return;
  }
  if (!b.exec) b.exec = capture(bucket_rows, stream, enqueue);
  CUDA_CHECK(cudaGraphLaunch(b.exec, stream));
}

}  // namespace flashmpt
