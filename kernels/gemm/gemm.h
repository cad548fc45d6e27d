// C = epilogue(alpha · A·Wᵀ), W in PyTorch's Linear layout [N, K] row-major. bf16 / f16 run on tensor cores, in
// three kernels behind one entry point: for prefill (M > 64) a TMA + wgmma GEMM on compute capability 9.0 when
// the binary carries sm_90a code, else a tiled mma.sync GEMM; for decode (M ≤ 64) a weight-streaming skinny
// GEMM that reads each weight byte once with 16-byte loads. fp32 (the engine's float32 correctness mode) runs a
// plain SIMT kernel with fp32 FMAs, no TF32. The skinny kernel (long K) and the wgmma kernel (grids short of the
// SM count) split K of an AddFloat output when given a split workspace, reducing the splits in a fixed order. Every
// output is bitwise reproducible, and the skinny kernel's sums for a row do not depend on how many rows it runs
// (batch invariance: a sequence decodes the same alone or in a batch).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt {

enum class GemmOut : int {
  Half = 0,       // c (dtype) = v (fp32 when dtype is F32)
  HalfGelu = 1,   // c (dtype) = gelu_erf(v)
  Float = 2,      // c (fp32) = v
  AddFloat = 3,   // c (fp32) += v: the residual stream update, in place
};

struct GemmParams {
  const void* a;  // [M, K] dtype, row stride lda elements
  const void* w;  // [N, K] dtype, row stride ldw elements
  void* c;        // [M, N] dtype or fp32 (see GemmOut), row stride ldc elements
  int64_t lda = 0, ldw = 0, ldc = 0;
  int M = 0, N = 0, K = 0;   // K % 8 == 0 and a, w 16-byte aligned with lda, ldw % 8 == 0 (16-byte rows)
  float alpha = 1.f;          // v = alpha · (A·Wᵀ)[m, n] + bias[n]
  const float* bias = nullptr;  // [N] or nullptr
  GemmOut out = GemmOut::Half;
  DType dtype = DType::BF16;  // of a and w: BF16, F16 or F32
  // Programmatic dependent launch on sm_90+ (kernels/common/pdl.cuh), honored by the skinny kernel: its weights
  // start streaming while the previous kernel in the stream finishes.
  bool pdl = false;
  // Workspace for splitting K of an AddFloat output over blocks (epilogue.cuh): split_partial_floats floats and
  // split_counter_count zeroed counters, left zeroed after each launch. Without it K is not split.
  float* split_partials = nullptr;
  size_t split_partial_floats = 0;
  unsigned* split_counters = nullptr;
  int split_counter_count = 0;
};

// Largest M the skinny kernel takes; larger M goes to the wgmma or the tiled kernel.
constexpr int kSkinnyMaxRows = 64;

// Picks the kernel from the dtype, M and the device. Returns cudaErrorInvalidValue for unsupported shapes or
// alignment.
cudaError_t gemm(const GemmParams& params, cudaStream_t stream);
cudaError_t gemmTiled(const GemmParams& params, cudaStream_t stream);
cudaError_t gemmSkinny(const GemmParams& params, cudaStream_t stream);
cudaError_t gemmSimt(const GemmParams& params, cudaStream_t stream);  // F32 only; ignores pdl
// cudaErrorNotSupported unless gemmPrepare found the wgmma kernel usable on the current device.
cudaError_t gemmWgmma(const GemmParams& params, cudaStream_t stream);
// Raises the dynamic shared-memory limits of the tiled and wgmma kernels and finds out whether the current device
// runs the wgmma kernel (call once per device before graph capture; until then prefill uses the tiled kernel).
cudaError_t gemmPrepare();
cudaError_t gemmTiledPrepare();
cudaError_t gemmWgmmaPrepare();
bool gemmWgmmaReady();  // on the current device
// The current device's SM count (the launchers size their grids by it).
cudaError_t multiprocessorCount(int* sms);

// y = gelu_erf(x) elementwise over n elements of dtype (BF16, F16 or F32); y may alias x.
struct GeluParams {
  const void* x = nullptr;
  void* y = nullptr;
  int64_t n = 0;
  DType dtype = DType::BF16;
};
cudaError_t gelu(const GeluParams& params, cudaStream_t stream);

}  // namespace flashmpt
