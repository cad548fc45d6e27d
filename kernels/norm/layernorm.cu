// One block per row. The row (s = x + residual) is staged in shared memory as fp32, so the mean and the
// variance are exact two-pass statistics and global memory is read once.
#include <cuda_runtime.h>

#include "kernels/common/block_reduce.cuh"
#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/norm/layernorm.h"

namespace flashmpt {
namespace {

constexpr int kThreads = 256;

template <class X, class Y>
__global__ void __launch_bounds__(kThreads) layerNormKernel(const LayerNormParams p) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  for (int i = threadIdx.x * 32; i < p.cols; i += kThreads * 32) {  // a line of each, 32 floats
    prefetchL2(p.weight + i);
    if (p.bias) prefetchL2(p.bias + i);
  }
  pdlWait();
  pdlLaunchDependents();
  const int64_t base = int64_t(blockIdx.x) * p.cols;
  const X* x = static_cast<const X*>(p.x) + base;
  const X* res = p.residual ? static_cast<const X*>(p.residual) + base : nullptr;

  float sum = 0.f;
  for (int i = threadIdx.x; i < p.cols; i += kThreads) {
    float v = toFloat<X>(x[i]);
    if (res) v += toFloat<X>(res[i]);
    row[i] = v;
    sum += v;
  }
  const float mean = blockSum(sum, scratch) / p.cols;
  float sq = 0.f;
  for (int i = threadIdx.x; i < p.cols; i += kThreads) {
    const float d = row[i] - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(blockSum(sq, scratch) / p.cols + p.eps);

  X* xOut = p.x_out ? static_cast<X*>(p.x_out) + base : nullptr;
  Y* y = static_cast<Y*>(p.y) + base;
  for (int i = threadIdx.x; i < p.cols; i += kThreads) {
    float v = (row[i] - mean) * rstd * p.weight[i];
    if (p.bias) v += p.bias[i];
    if (xOut) xOut[i] = fromFloat<X>(row[i]);
    y[i] = fromFloat<Y>(v);
  }
}

}  // namespace

cudaError_t layerNorm(const LayerNormParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols <= 0 || !p.x || !p.y || !p.weight) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  const size_t smem = size_t(p.cols) * sizeof(float);
  return switchAny(p.x_dtype, [&](auto xt) {
    using X = typename decltype(xt)::type;
    return switchAny(p.y_dtype, [&](auto yt) {
      using Y = typename decltype(yt)::type;
      if (smem > 48 * 1024) {
        const cudaError_t err =
            cudaFuncSetAttribute(layerNormKernel<X, Y>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (err != cudaSuccess) return err;
      }
      return launchPdl(p.pdl, layerNormKernel<X, Y>, dim3(p.rows), dim3(kThreads), smem, stream, p);
    });
  });
}

}  // namespace flashmpt
