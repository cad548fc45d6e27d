// One block per row. Each (value, id) is packed into a 64-bit key that orders as the pick does — the value's
// bits made monotonic in the high word, the complemented id in the low word (ties to the lower id) — so the
// row's pick is one max-reduction, whatever order the threads meet in. Loads are 16 bytes wide and unrolled so
// several are in flight: the row (200 KB for the seed model) was just written by the LM head and sits in L2.
// At most 3 lead ids + 3 tail ids are left for single loads: fewer than the block's threads.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/pdl.cuh"
#include "kernels/sampling/greedy.h"

namespace flashmpt {
namespace {

constexpr int kThreads = 1024;

// NaN and banned ids as −inf: still above "no key" (0), so a row of −inf values reports kGreedyPickNone.
__device__ __forceinline__ uint64_t pickKey(float value, int id, int banned_id) {
  if (isnan(value) || id == banned_id) value = -INFINITY;
  const uint32_t bits = __float_as_uint(value);
  const uint32_t ordered = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
  return (uint64_t(ordered) << 32) | uint32_t(~uint32_t(id));
}

__device__ __forceinline__ uint64_t maxKey(uint64_t a, uint64_t b) { return a > b ? a : b; }

__global__ void __launch_bounds__(kThreads) greedyStepKernel(const GreedyStepParams p) {
  pdlLaunchDependents();
  pdlWait();
  const int row = blockIdx.x;
  if (p.positions[row] < 0) return;  // a padding row
  const float* logits = p.logits + int64_t(row) * p.row_stride;
  // 16-byte vectors from the first aligned id (a row stride that is not a multiple of 4 shifts each row), single
  // floats for the ids before it and after the last whole vector.
  const int lead = min(p.vocab, int((16 - reinterpret_cast<uintptr_t>(logits) % 16) % 16 / 4));
  const int vectors = (p.vocab - lead) / 4;
  const float4* aligned = reinterpret_cast<const float4*>(logits + lead);
  uint64_t best = 0;
#pragma unroll 4
  for (int v = threadIdx.x; v < vectors; v += kThreads) {
    const float4 x = aligned[v];
    const int id = lead + 4 * v;
    best = maxKey(best, pickKey(x.x, id, p.banned_id));
    best = maxKey(best, pickKey(x.y, id + 1, p.banned_id));
    best = maxKey(best, pickKey(x.z, id + 2, p.banned_id));
    best = maxKey(best, pickKey(x.w, id + 3, p.banned_id));
  }
  const int rest = p.vocab - 4 * vectors;  // the lead ids, then the tail
  if (threadIdx.x < rest) {
    const int id = threadIdx.x < lead ? threadIdx.x : lead + 4 * vectors + (threadIdx.x - lead);
    best = maxKey(best, pickKey(logits[id], id, p.banned_id));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) best = maxKey(best, __shfl_xor_sync(0xffffffffu, best, o));
  __shared__ uint64_t warpBest[kThreads / 32];
  if (threadIdx.x % 32 == 0) warpBest[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kThreads / 32; ++w) best = maxKey(best, warpBest[w]);

  const uint32_t ordered = uint32_t(best >> 32);
  const float value = __uint_as_float(ordered & 0x80000000u ? ordered & 0x7fffffffu : ~ordered);
  const int32_t pick = value == INFINITY ? kGreedyPickInfinite : value == -INFINITY ? kGreedyPickNone
                                                                                    : int32_t(~uint32_t(best));
  const int32_t position = p.positions[row];
  p.tokens[int64_t(position - p.first_positions[row]) * p.token_stride + row] = pick;
  p.ids[row] = pick < 0 ? 0 : pick;
  p.positions[row] = position + 1;
  p.seq_lens[row] += 1;
}

}  // namespace

cudaError_t greedyStep(const GreedyStepParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.vocab < 1 || p.vocab > p.row_stride || !p.logits || !p.ids || !p.positions || !p.seq_lens ||
      !p.first_positions || !p.tokens || p.token_stride < p.rows || reinterpret_cast<uintptr_t>(p.logits) % 4 != 0)
    return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  return launchPdl(p.pdl, greedyStepKernel, dim3(p.rows), dim3(kThreads), 0, stream, p);
}

}  // namespace flashmpt
