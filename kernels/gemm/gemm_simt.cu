// fp32 GEMM on the CUDA cores for the engine's float32 correctness mode: plain FMAs with fp32 accumulation (no
// tensor cores, so no TF32), 64×64 block tiles over k steps of 16 staged in shared memory, a 4×4 patch of outputs
// per thread. Each output's sum runs over k in order, so results are deterministic. Simple over fast: this mode
// exists to check the half-precision paths against an fp32 computation of the same engine.
#include <cuda_runtime.h>

#include "kernels/gemm/epilogue.cuh"
#include "kernels/gemm/gemm.h"

namespace flashmpt {
namespace {

constexpr int kTile = 64, kStepK = 16, kThreads = 256, kPatch = 4;  // 16×16 threads × 4×4 outputs = 64×64

template <GemmOut OUT>
__global__ void __launch_bounds__(kThreads) gemmSimtKernel(const GemmParams p) {
  // k-major tiles (+1 column against bank conflicts on the transposing stores).
  __shared__ float sA[kStepK][kTile + 1];
  __shared__ float sW[kStepK][kTile + 1];
  const float* A = static_cast<const float*>(p.a);
  const float* W = static_cast<const float*>(p.w);
  const int m0 = blockIdx.y * kTile, n0 = blockIdx.x * kTile;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float acc[kPatch][kPatch] = {};
  for (int k0 = 0; k0 < p.K; k0 += kStepK) {
    // 64 rows × 16 k of each operand: 4 elements per thread, consecutive threads along k (coalesced rows).
    for (int i = threadIdx.x; i < kTile * kStepK; i += kThreads) {
      const int row = i / kStepK, kk = i % kStepK, k = k0 + kk;
      sA[kk][row] = m0 + row < p.M && k < p.K ? A[int64_t(m0 + row) * p.lda + k] : 0.f;
      sW[kk][row] = n0 + row < p.N && k < p.K ? W[int64_t(n0 + row) * p.ldw + k] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kStepK; ++kk) {
      float a[kPatch], w[kPatch];
#pragma unroll
      for (int i = 0; i < kPatch; ++i) {
        a[i] = sA[kk][ty + 16 * i];
        w[i] = sW[kk][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < kPatch; ++i)
#pragma unroll
        for (int j = 0; j < kPatch; ++j) acc[i][j] = fmaf(a[i], w[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < kPatch; ++i) {
    const int m = m0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < kPatch; ++j) {
      const int n = n0 + tx + 16 * j;
      if (m < p.M && n < p.N) epilogueStore<float, OUT>(p, m, n, acc[i][j]);
    }
  }
}

}  // namespace

cudaError_t gemmSimt(const GemmParams& p, cudaStream_t stream) {
  if (p.dtype != DType::F32) return cudaErrorInvalidValue;
  const dim3 grid((p.N + kTile - 1) / kTile, (p.M + kTile - 1) / kTile);
  return switchGemmOut(p.out, [&](auto o) {
    gemmSimtKernel<decltype(o)::value><<<grid, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace flashmpt
