// fp32 reference operators of the MPT forward pass. The CPU engine is built from them, and CUDA kernel tests
// compare against them, so each is a free function over plain row-major arrays with the math spelled out.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/kv/paged_kv.h"

namespace flashmpt::cpu {

// A fixed set of worker threads for data-parallel loops; the calling thread takes part in every loop.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads in all, the caller included; <= 0: one per hardware thread
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long (except the last),
  // and returns when all are done. The first exception thrown by fn is rethrown here.
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void workerLoop();
  void runTasks();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  // The loop being run: tasks [0, task_count_) each cover task_size_ elements of n_.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, task_size_ = 0, task_count_ = 0, next_task_ = 0, tasks_left_ = 0;
  std::exception_ptr error_;
};

// y[t, o] = bias[o] + Σ_i x[t, i] · w[o, i] for t < n_tokens, o < out: x [n_tokens, in], w [out, in] (PyTorch's
// Linear layout), y [n_tokens, out], bias [out] or null. Parallel over output rows; for several tokens each
// block of weight rows is read once per block of tokens.
void linear(const float* x, int64_t n_tokens, int64_t in, const float* w, const float* bias, int64_t out, float* y,
            ThreadPool* pool);

// y = (x − mean) / sqrt(var + eps) · weight + bias over `dim` values (biased variance, fp32). bias may be null;
// y may alias x.
void layerNormRow(const float* x, int64_t dim, const float* weight, const float* bias, float eps, float* y);
// layerNormRow over n_rows contiguous rows.
void layerNorm(const float* x, int64_t n_rows, int64_t dim, const float* weight, const float* bias, float eps, float* y,
               ThreadPool* pool);

// x = x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), in place (the exact GELU).
void geluErf(float* x, int64_t n, ThreadPool* pool);

// One head's attention for one query at position q_pos over keys 0..n_keys-1 (key j at k + kv.offset(j), value
// j at v + kv.offset(j): contiguous rows or a paged cache's blocks):
// p = softmax_j(scale · q·k_j + slope · (j − q_pos)) computed in fp32 with the max subtracted; out = Σ_j p_j v_j.
// `scores` is scratch of n_keys floats. slope 0 means no ALiBi.
void attendRow(const float* q, const float* k, const float* v, const KvRows& kv, int64_t n_keys, int64_t q_pos,
               int head_dim, float scale, float slope, float* scores, float* out);

struct AttentionShape {
  int64_t n_queries = 0;  // query i sits at position q_start + i and sees keys 0..q_start + i (causal)
  int64_t q_start = 0;
  int n_heads = 0, head_dim = 0;  // head h is the contiguous slice [h·head_dim, (h+1)·head_dim) of a row
  int64_t q_stride = 0, kv_stride = 0, out_stride = 0;  // floats between consecutive rows
  float softmax_scale = 0.f;
  const float* alibi_slopes = nullptr;  // n_heads slopes, or null for no ALiBi
};
// Causal multi-head attention of one sequence: q [n_queries rows], k and v [q_start + n_queries rows],
// out [n_queries rows]. Parallel over heads and queries.
void causalAttention(const AttentionShape& shape, const float* q, const float* k, const float* v, float* out,
                     ThreadPool* pool);

// Counter-based N(0, stddev²) samples: element i depends only on (stream, i), so any slice can be produced
// anywhere (another thread, a GPU) and match. Streams for different tensors come from normalStream.
uint64_t normalStream(uint64_t seed, const char* tensor_name);
void fillNormal(float* dst, int64_t n, float stddev, uint64_t stream, ThreadPool* pool);

}  // namespace flashmpt::cpu
