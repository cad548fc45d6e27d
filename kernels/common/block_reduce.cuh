// Block-wide sums and maxima through warp shuffles and one shared-memory hop (any block size ≤ 1024 that is a
// multiple of 32). Every thread gets the result; `scratch` holds 32 floats and may be reused right after.
#pragma once
#include <cuda_runtime.h>

namespace flashmpt {

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <bool kMax>
__device__ __forceinline__ float blockReduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? warpMax(v) : warpSum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.f);
  return kMax ? warpMax(v) : warpSum(v);
}

__device__ __forceinline__ float blockSum(float v, float* scratch) { return blockReduce<false>(v, scratch); }
__device__ __forceinline__ float blockMax(float v, float* scratch) { return blockReduce<true>(v, scratch); }

// Two block sums in one pass (one pair of barriers): each component is added in blockSum's order, so its bits are
// blockSum's. `scratch` holds 64 floats.
__device__ __forceinline__ float2 blockSum2(float2 v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v.x = warpSum(v.x);
  v.y = warpSum(v.y);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v.x, scratch[32 + warp] = v.y;
  __syncthreads();
  v.x = lane < warps ? scratch[lane] : 0.f;
  v.y = lane < warps ? scratch[32 + lane] : 0.f;
  return make_float2(warpSum(v.x), warpSum(v.y));
}

}  // namespace flashmpt
