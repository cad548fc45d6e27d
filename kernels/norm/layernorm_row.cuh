// LayerNorm of one row by one block of kLayerNormThreads threads: the code of the LayerNorm kernel, shared with the
// skinny GEMM that folds the next LayerNorm into its last block (kernels/gemm/gemm_skinny.cu). Both run it with the
// same threads summing the same elements in the same order, so a row normalizes bitwise the same either way and a
// sequence decodes the same alone or in a batch. The row (s = x + residual) is staged in shared memory as fp32, so
// the mean and the variance are exact two-pass statistics and global memory is read once; reads go through L2
// (ld.cg), since in the folded case other blocks of the same grid wrote the row.
#pragma once
#include <cuda_runtime.h>

#include "kernels/common/block_reduce.cuh"
#include "kernels/common/half.cuh"
#include "kernels/norm/layernorm.h"

namespace flashmpt {

constexpr int kLayerNormThreads = 256;

// staged: p.cols floats of shared memory; scratch: 32.
template <class X, class Y>
__device__ void layerNormRow(const LayerNormParams& p, int64_t row, float* staged, float* scratch) {
  const int64_t base = row * p.cols;
  const X* x = static_cast<const X*>(p.x) + base;
  const X* res = p.residual ? static_cast<const X*>(p.residual) + base : nullptr;

  float sum = 0.f;
  for (int i = threadIdx.x; i < p.cols; i += kLayerNormThreads) {
    float v = toFloat<X>(__ldcg(x + i));
    if (res) v += toFloat<X>(__ldcg(res + i));
    staged[i] = v;
    sum += v;
  }
  const float mean = blockSum(sum, scratch) / p.cols;
  float sq = 0.f;
  for (int i = threadIdx.x; i < p.cols; i += kLayerNormThreads) {
    const float d = staged[i] - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(blockSum(sq, scratch) / p.cols + p.eps);

  X* xOut = p.x_out ? static_cast<X*>(p.x_out) + base : nullptr;
  Y* y = static_cast<Y*>(p.y) + base;
  for (int i = threadIdx.x; i < p.cols; i += kLayerNormThreads) {
    float v = (staged[i] - mean) * rstd * p.weight[i];
    if (p.bias) v += p.bias[i];
    if (xOut) xOut[i] = fromFloat<X>(staged[i]);
    y[i] = fromFloat<Y>(v);
  }
}

}  // namespace flashmpt
