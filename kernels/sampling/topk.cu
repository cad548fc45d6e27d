// Two passes. Pass 1: each block takes a 4096-wide chunk of a row, reduces its max and Σexp(x − max), and
// bitonic-sorts it in shared memory to keep its k best. Pass 2: one block per row sorts the chunks' k-best
// lists (at most 4096 candidates) and merges the partial log-sum-exps.
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
constexpr int kSlot = 2 * kTopKMax + 2;  // per chunk: k values, k ids (int bits), max, Σexp

int chunksOf(int vocab) { return (vocab + kChunk - 1) / kChunk; }

// a ranks before b: larger value, then smaller id.
__device__ __forceinline__ bool before(float av, int ai, float bv, int bi) { return av > bv || (av == bv && ai < bi); }

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

__global__ void __launch_bounds__(kThreads) topKChunkKernel(const TopKParams p) {
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
    for (int t = 0; t < kPerThread; ++t) sum += __expf(v[threadIdx.x + t * kThreads] - chunkMax);
  }
  sum = blockSum(sum, scratch);
  bitonicSort(v, id);
  float* out = p.workspace + (int64_t(row) * gridDim.x + blockIdx.x) * kSlot;
  if (threadIdx.x < p.k) {
    out[threadIdx.x] = v[threadIdx.x];
    out[kTopKMax + threadIdx.x] = __int_as_float(id[threadIdx.x]);
  }
  if (threadIdx.x == 0) {
    out[2 * kTopKMax] = chunkMax;
    out[2 * kTopKMax + 1] = sum;
  }
}

__global__ void __launch_bounds__(kThreads) topKMergeKernel(const TopKParams p, int chunks) {
  __shared__ float v[kChunk];
  __shared__ int id[kChunk];
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const float* in = p.workspace + int64_t(row) * chunks * kSlot;
  const int candidates = chunks * p.k;
#pragma unroll
  for (int t = 0; t < kPerThread; ++t) {
    const int i = threadIdx.x + t * kThreads;
    const bool ok = i < candidates;
    const float* slot = in + (ok ? i / p.k : 0) * kSlot;
    v[i] = ok ? slot[i % p.k] : -INFINITY;
    id[i] = ok ? __float_as_int(slot[kTopKMax + i % p.k]) : INT_MAX;
  }
  // Σ over chunks of Σexp_c · exp(max_c − M), M the row max.
  const float chunkMax = threadIdx.x < chunks ? in[threadIdx.x * kSlot + 2 * kTopKMax] : -INFINITY;
  const float rowMax = blockMax(chunkMax, scratch);
  const float part = threadIdx.x < chunks && chunkMax != -INFINITY
                         ? in[threadIdx.x * kSlot + 2 * kTopKMax + 1] * __expf(chunkMax - rowMax)
                         : 0.f;
  const float total = blockSum(part, scratch);
  bitonicSort(v, id);
  if (threadIdx.x < p.k) {
    p.values[int64_t(row) * p.k + threadIdx.x] = v[threadIdx.x];
    p.indices[int64_t(row) * p.k + threadIdx.x] = id[threadIdx.x];
  }
  if (threadIdx.x == 0 && p.lse) p.lse[row] = rowMax + logf(total);
}

}  // namespace

size_t topKWorkspaceFloats(int rows, int vocab) { return size_t(rows) * chunksOf(vocab) * kSlot; }

// The merge block holds every chunk's k best (≤ kChunk candidates) and one partial LSE per thread.
int topKMaxVocab(int k) { return k <= 0 ? 0 : (kChunk / k < kThreads ? kChunk / k : kThreads) * kChunk; }

cudaError_t topK(const TopKParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.k < 1 || p.k > kTopKMax || p.k > p.vocab || p.vocab > topKMaxVocab(p.k) ||
      p.row_stride < p.vocab || !p.logits || !p.values || !p.indices || !p.workspace) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) return cudaSuccess;
  const int chunks = chunksOf(p.vocab);
  topKChunkKernel<<<dim3(chunks, p.rows), kThreads, 0, stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  topKMergeKernel<<<p.rows, kThreads, 0, stream>>>(p, chunks);
  return cudaGetLastError();
}

}  // namespace flashmpt
