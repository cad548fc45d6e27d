#include "csrc/engine/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace flashmpt::cpu {

namespace {

// More tasks than threads so uneven work (causal attention rows) balances out.
constexpr int64_t kTasksPerThread = 4;
// Below this many multiply-adds a loop stays on the calling thread: waking workers costs more.
constexpr int64_t kMinParallelWork = 1 << 15;

int64_t grainFor(int64_t work_per_item) { return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_item)); }

void forRange(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) {
    pool->parallelFor(n, grain, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

// Independent partial sums per lane so the compiler can keep them in vector registers (a single running
// sum is a serial dependency it may not reorder).
constexpr int kLanes = 8;

float dotProduct(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  const int64_t main = n / kLanes * kLanes;
  for (int64_t i = 0; i < main; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (int64_t i = main; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// NT tokens × NR weight rows of y; x rows and w rows are `in` long and contiguous.
template <int NT, int NR>
inline void linearTile(const float* x, int64_t in, const float* w, const float* bias, float* y, int64_t ldy) {
  float acc[NT][NR][kLanes] = {};
  const int64_t main = in / kLanes * kLanes;
  for (int64_t i = 0; i < main; i += kLanes) {
    for (int t = 0; t < NT; ++t) {
      for (int r = 0; r < NR; ++r) {
        for (int l = 0; l < kLanes; ++l) acc[t][r][l] += x[t * in + i + l] * w[r * in + i + l];
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    for (int r = 0; r < NR; ++r) {
      const float* a = acc[t][r];
      float sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
      for (int64_t i = main; i < in; ++i) sum += x[t * in + i] * w[r * in + i];
      y[t * ldy + r] = bias ? sum + bias[r] : sum;
    }
  }
}

template <int NT, int NR>
void linearRows(const float* x, int64_t in, const float* w, const float* bias, int64_t r0, int64_t r1, float* y,
                int64_t ldy) {
  int64_t r = r0;
  for (; r + NR <= r1; r += NR) linearTile<NT, NR>(x, in, w + r * in, bias ? bias + r : nullptr, y + r, ldy);
  for (; r < r1; ++r) linearTile<NT, 1>(x, in, w + r * in, bias ? bias + r : nullptr, y + r, ldy);
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  workers_.reserve(size_t(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t tasks = std::min((n + grain - 1) / grain, int64_t(size()) * kTasksPerThread);
  if (tasks <= 1 || workers_.empty()) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    n_ = n;
    task_size_ = (n + tasks - 1) / tasks;
    task_count_ = (n + task_size_ - 1) / task_size_;
    next_task_ = 0;
    tasks_left_ = task_count_;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  runTasks();
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return tasks_left_ == 0; });
    fn_ = nullptr;
    error = error_;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::runTasks() {
  for (;;) {
    int64_t task;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_task_ >= task_count_) return;
      task = next_task_++;
    }
    const int64_t begin = task * task_size_;
    try {
      (*fn_)(begin, std::min(n_, begin + task_size_));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (--tasks_left_ == 0) done_.notify_all();
  }
}

void ThreadPool::workerLoop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    runTasks();
  }
}

void linear(const float* x, int64_t n_tokens, int64_t in, const float* w, const float* bias, int64_t out, float* y,
            ThreadPool* pool) {
  // Weight rows per cache block: about 256 KiB, so a block stays in L2 while every token tile passes over it.
  const int64_t row_block = std::max<int64_t>(2, (int64_t(256) << 10) / (in * int64_t(sizeof(float))));
  forRange(pool, out, grainFor(in * n_tokens), [&](int64_t o0, int64_t o1) {
    for (int64_t rb = o0; rb < o1; rb += row_block) {
      const int64_t re = std::min(o1, rb + row_block);
      // Tile shapes measured fastest with SSE-only code generation: 8 tokens × 1 row, and 1 token × 4 rows.
      // Every tile sums in the same order, so a token's outputs do not depend on how tokens are grouped.
      int64_t t = 0;
      for (; t + 8 <= n_tokens; t += 8) linearRows<8, 1>(x + t * in, in, w, bias, rb, re, y + t * out, out);
      for (; t < n_tokens; ++t) linearRows<1, 4>(x + t * in, in, w, bias, rb, re, y + t * out, out);
    }
  });
}

void layerNormRow(const float* x, int64_t dim, const float* weight, const float* bias, float eps, float* y) {
  float sum = 0.f;
  for (int64_t i = 0; i < dim; ++i) sum += x[i];
  const float mean = sum / float(dim);
  float squares = 0.f;
  for (int64_t i = 0; i < dim; ++i) squares += (x[i] - mean) * (x[i] - mean);
  const float inv_std = 1.f / std::sqrt(squares / float(dim) + eps);
  for (int64_t i = 0; i < dim; ++i) {
    const float normalized = (x[i] - mean) * inv_std * weight[i];
    y[i] = bias ? normalized + bias[i] : normalized;
  }
}

void layerNorm(const float* x, int64_t n_rows, int64_t dim, const float* weight, const float* bias, float eps, float* y,
               ThreadPool* pool) {
  forRange(pool, n_rows, grainFor(4 * dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) layerNormRow(x + r * dim, dim, weight, bias, eps, y + r * dim);
  });
}

void geluErf(float* x, int64_t n, ThreadPool* pool) {
  forRange(pool, n, grainFor(16), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * float(M_SQRT1_2)));
  });
}

void attendRow(const float* q, const float* k, const float* v, const KvRows& kv, int64_t n_keys, int64_t q_pos,
               int head_dim, float scale, float slope, float* scores, float* out) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n_keys; ++j) {
    const float s = dotProduct(q, k + kv.offset(j), head_dim) * scale + slope * float(j - q_pos);
    scores[j] = s;
    max_score = std::max(max_score, s);
  }
  float total = 0.f;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    total += scores[j];
  }
  std::fill(out, out + head_dim, 0.f);
  for (int64_t j = 0; j < n_keys; ++j) {
    const float p = scores[j];
    const float* vj = v + kv.offset(j);
    for (int d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
  const float inv_total = 1.f / total;
  for (int d = 0; d < head_dim; ++d) out[d] *= inv_total;
}

void causalAttention(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                     ThreadPool* pool) {
  const int64_t n_items = s.n_queries * s.n_heads;  // item = query · n_heads + head
  const int64_t keys = s.q_start + s.n_queries;
  forRange(pool, n_items, grainFor(2 * keys * s.head_dim), [&](int64_t i0, int64_t i1) {
    std::vector<float> scores(static_cast<size_t>(keys));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t i = item / s.n_heads;
      const int h = int(item % s.n_heads);
      const int64_t offset = int64_t(h) * s.head_dim;
      attendRow(q + i * s.q_stride + offset, k + offset, v + offset, KvRows{nullptr, 0, 0, s.kv_stride}, s.q_start + i + 1, s.q_start + i,
                s.head_dim, s.softmax_scale, s.alibi_slopes ? s.alibi_slopes[h] : 0.f, scores.data(),
                out + i * s.out_stride + offset);
    }
  });
}

uint64_t normalStream(uint64_t seed, const char* tensor_name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char* c = tensor_name; *c; ++c) hash = (hash ^ uint8_t(*c)) * 0x100000001b3ull;
  return mix64(seed ^ mix64(hash));
}

void fillNormal(float* dst, int64_t n, float stddev, uint64_t stream, ThreadPool* pool) {
  // Box-Muller on pair p = i / 2: two 24-bit uniforms from one 64-bit hash of (stream, p).
  const int64_t pairs = (n + 1) / 2;
  forRange(pool, pairs, grainFor(64), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const uint64_t bits = mix64(stream + uint64_t(p + 1) * 0x9e3779b97f4a7c15ull);
      const float u1 = float((bits >> 40) + 1) * 0x1p-24f;  // (0, 1]: log stays finite
      const float u2 = float(bits & 0xffffff) * 0x1p-24f;
      const float radius = stddev * std::sqrt(-2.f * std::log(u1));
      const float angle = 6.28318530717958647692f * u2;
      dst[2 * p] = radius * std::cos(angle);
      if (2 * p + 1 < n) dst[2 * p + 1] = radius * std::sin(angle);
    }
  });
}

}  // namespace flashmpt::cpu
