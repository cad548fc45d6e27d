// One block per row (kernels/norm/layernorm_row.cuh).
#include <cuda_runtime.h>

#include "kernels/common/dispatch.h"
#include "kernels/common/pdl.cuh"
#include "kernels/norm/layernorm.h"
#include "kernels/norm/layernorm_row.cuh"

namespace flashmpt {
namespace {

template <class X, class Y>
__global__ void __launch_bounds__(kLayerNormThreads) layerNormKernel(const LayerNormParams p) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  pdlWait();
  pdlLaunchDependents();
  layerNormRow<X, Y>(p, blockIdx.x, row, scratch);
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
      return launchPdl(p.pdl, layerNormKernel<X, Y>, dim3(p.rows), dim3(kLayerNormThreads), smem, stream, p);
    });
  });
}

}  // namespace flashmpt
