// A tree of sorted lists. Chunk pass: each block takes a 4096-wide chunk of a row, reduces its max and
// Σexp(x − max), and bitonic-sorts it in shared memory to keep its k best. Merge passes: each block sorts the
// k-best lists of up to mergeFan(k) chunks (at most 4096 candidates) into one and merges their partial
// log-sum-exps, until one list per row is left: one merge pass for the seed model's 50k ids up to k = 256, two
// for k = 1024.
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>

#include "kernels/common/block_reduce.cuh"
#include "kernels/sampling/topk.h"

namespace flashmpt {
namespace {

constexpr int kThreads = 1024;
constexpr int kChunk = 4096;
constexpr int kPerThread = kChunk / kThreads;
static_assert(kTopKMax <= kThreads, "one thread writes each of a list's k entries");
static_assert(kChunk / kTopKMax >= 2, "a merge pass must shrink the lists");

int chunksOf(int vocab) { return (vocab + kChunk - 1) / kChunk; }

// Lists one merge block takes: all its candidates fit the sort, and one thread holds each list's partial LSE.
__host__ __device__ int mergeFan(int k) { return kChunk / k < kThreads ? kChunk / k : kThreads; }

// One list in the workspace: k values, k ids (int bits), then its max and Σexp(x − max).
__host__ __device__ int listFloats(int k) { return 2 * k + 2; }

// NaN counts as −inf, as the sampler reads it (and the sort needs a strict weak order).
__device__ __forceinline__ float rankKey(float x) { return isnan(x) ? -INFINITY : x; }

// a ranks before b: larger value, then smaller id.
__device__ __forceinline__ bool before(float av, int ai, float bv, int bi) {
  const float a = rankKey(av), b = rankKey(bv);
  return a > b || (a == b && ai < bi);
}

// Sorts kChunk (value, id) pairs in shared memory into ranking order.
__device__ void bitonicSort(float* v, int* id) {
  for (int size = 2; size <= kChunk; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
#pragma unroll
      for (int t = 0; t < kPerThread; ++t) {
        const int i = threadIdx.x + t * kThreads, j = i ^ stride;
        if (j <= i) continue;
        const bool rankingOrder = (i & size) == 0;  // this half ends up best-first, the other worst-first
        const bool swap = rankingOrder ? before(v[j], id[j], v[i], id[i]) : before(v[i], id[i], v[j], id[j]);
        if (swap) {
          const float tv = v[i];
          v[i] = v[j];
          v[j] = tv;
          const int ti = id[i];
          id[i] = id[j];
          id[j] = ti;
        }
      }
    }
  }
  __syncthreads();
}

// Writes the sorted head of v/id as list `out`, or as the row's result when this is the last pass.
__device__ void writeList(const TopKParams& p, const float* v, const int* id, float max, float sum, float* out,
                          bool last) {
  const int row = blockIdx.y;
  if (last) {
    if (threadIdx.x < p.k) {
      p.values[int64_t(row) * p.k + threadIdx.x] = v[threadIdx.x];
      p.indices[int64_t(row) * p.k + threadIdx.x] = id[threadIdx.x];
    }
    if (threadIdx.x == 0 && p.lse) p.lse[row] = max + logf(sum);
    return;
  }
  if (threadIdx.x < p.k) {
    out[threadIdx.x] = v[threadIdx.x];
    out[p.k + threadIdx.x] = __int_as_float(id[threadIdx.x]);
  }
  if (threadIdx.x == 0) {
    out[2 * p.k] = max;
    out[2 * p.k + 1] = sum;
  }
}

// Grid (chunks, rows): lists[row · chunks + chunk].
__global__ void __launch_bounds__(kThreads) topKChunkKernel(const TopKParams p, float* lists, bool last) {
  __shared__ float v[kChunk];
  __shared__ int id[kChunk];
  __shared__ float scratch[32];
  const int row = blockIdx.y, first = blockIdx.x * kChunk;
  const float* logits = p.logits + int64_t(row) * p.row_stride;
  float localMax = -INFINITY;
#pragma unroll
  for (int t = 0; t < kPerThread; ++t) {
    const int i = threadIdx.x + t * kThreads, col = first + i;
    const bool in = col < p.vocab;
    v[i] = in ? logits[col] : -INFINITY;
    id[i] = in ? col : INT_MAX;
    localMax = fmaxf(localMax, v[i]);
  }
  const float chunkMax = blockMax(localMax, scratch);
  float sum = 0.f;
  if (chunkMax != -INFINITY) {
#pragma unroll
    for (int t = 0; t < kPerThread; ++t) sum += __expf(rankKey(v[threadIdx.x + t * kThreads]) - chunkMax);
  }
  sum = blockSum(sum, scratch);
  bitonicSort(v, id);
  writeList(p, v, id, chunkMax, sum, lists + (int64_t(row) * gridDim.x + blockIdx.x) * listFloats(p.k), last);
}

// Grid (groups, rows): merges in[row · listsIn + group · fan …] into out[row · groups + group].
__global__ void __launch_bounds__(kThreads) topKMergeKernel(const TopKParams p, const float* in, int listsIn,
                                                            float* out, bool last) {
  __shared__ float v[kChunk];
  __shared__ int id[kChunk];
  __shared__ float scratch[32];
  const int row = blockIdx.y, fan = mergeFan(p.k), stride = listFloats(p.k);
  const int firstList = blockIdx.x * fan, count = min(fan, listsIn - firstList);
  const float* lists = in + (int64_t(row) * listsIn + firstList) * stride;
  const int candidates = count * p.k;
#pragma unroll
  for (int t = 0; t < kPerThread; ++t) {
    const int i = threadIdx.x + t * kThreads;
    const bool ok = i < candidates;
    const float* list = lists + (ok ? i / p.k : 0) * stride;
    v[i] = ok ? list[i % p.k] : -INFINITY;
    id[i] = ok ? __float_as_int(list[p.k + i % p.k]) : INT_MAX;
  }
  // Σ over lists of Σexp_l · exp(max_l − M), M the max over these lists.
  const float listMax = threadIdx.x < count ? lists[threadIdx.x * stride + 2 * p.k] : -INFINITY;
  const float groupMax = blockMax(listMax, scratch);
  const float part = threadIdx.x < count && listMax != -INFINITY
                         ? lists[threadIdx.x * stride + 2 * p.k + 1] * __expf(listMax - groupMax)
                         : 0.f;
  const float total = blockSum(part, scratch);
  bitonicSort(v, id);
  writeList(p, v, id, groupMax, total, out + (int64_t(row) * gridDim.x + blockIdx.x) * stride, last);
}

}  // namespace

size_t topKWorkspaceFloats(int rows, int vocab, int k) {
  // Two regions the passes alternate between: the chunks' lists, then the first merge pass's (never more).
  const size_t chunks = size_t(chunksOf(vocab)), fan = size_t(mergeFan(k));
  return size_t(rows) * size_t(listFloats(k)) * (chunks + (chunks + fan - 1) / fan);
}

cudaError_t topK(const TopKParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.k < 1 || p.k > kTopKMax || p.k > p.vocab || p.row_stride < p.vocab || !p.logits || !p.values ||
      !p.indices || !p.workspace) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) return cudaSuccess;
  const int fan = mergeFan(p.k);
  int lists = chunksOf(p.vocab);
  float* in = p.workspace;
  float* spare = p.workspace + size_t(p.rows) * listFloats(p.k) * lists;
  topKChunkKernel<<<dim3(lists, p.rows), kThreads, 0, stream>>>(p, in, lists == 1);
  cudaError_t err = cudaGetLastError();
  while (err == cudaSuccess && lists > 1) {
    const int groups = (lists + fan - 1) / fan;
    topKMergeKernel<<<dim3(groups, p.rows), kThreads, 0, stream>>>(p, in, lists, spare, groups == 1);
    err = cudaGetLastError();
    float* merged = spare;
    spare = in;
    in = merged;
    lists = groups;
  }
  return err;
}

}  // namespace flashmpt
