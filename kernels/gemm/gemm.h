// C = epilogue(alpha · A·Wᵀ), W in PyTorch's Linear layout [N, K] row-major. bf16 / f16 run on tensor cores, in
// three kernels behind one entry point: for prefill (M > 64) a TMA + wgmma GEMM on compute capability 9.0 when
// the binary carries sm_90a code, else a tiled mma.sync GEMM; for decode (M ≤ 64) a weight-streaming skinny
// GEMM that reads each weight byte once with 16-byte loads, or when asked (GemmParams::wgmma_decode) the wgmma
// kernel's decode layout, K in parts per cluster of blocks. fp32 (the engine's float32 correctness mode) runs a
// plain SIMT kernel with fp32 FMAs, no TF32. The skinny kernel (long K) and the wgmma kernel split K of an AddFloat
// output when given a split workspace, reducing the splits in a fixed order. Every output is bitwise reproducible,
// and a row's sums do not depend on how many rows run beside it (batch invariance): among decode rows (M ≤ 64, on
// either decode kernel), and on the wgmma kernel at any M when asked (GemmParams::row_invariant), so a sequence
// decodes the same alone or in a batch, and a prompt prefills the same alone or beside others.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"
#include "kernels/common/device.h"  // multiprocessorCount, for the launchers and the engine's workspace sizes

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
  // Programmatic dependent launch on sm_90+ (kernels/common/pdl.cuh), honored by the decode kernels (the skinny
  // kernel, the wgmma decode layout): their weights start streaming while the previous kernel in the stream finishes.
  bool pdl = false;
  // A row's sums must not depend on M or on the rows beside it, at any M (prompts sharing a prefill pass): where
  // gemmRowInvariance holds, the wgmma kernel takes every M and sums an AddFloat output's K in fixed parts. Off,
  // prefill takes the fastest layout for its M, and M ≤ 64 the skinny kernel (invariant among M ≤ 64 only).
  bool row_invariant = false;
  // Decode rows (M ≤ 64, not row_invariant) of an engine that batches many: the wgmma kernel's decode layout
  // (gemmWgmmaDecode) where it runs, instead of the skinny kernel. Each is batch-invariant on its own, so one engine
  // keeps to one; the wgmma layout is slower at few rows and faster from ~32 (H100: the 1B decode GEMMs at 1 / 64
  // rows 1.28 / 1.50 ms against the skinny kernel's 1.02 / 1.98 ms, bench/RESULTS.md session 7).
  bool wgmma_decode = false;
  // Workspace for splitting K of an AddFloat output over blocks (epilogue.cuh): split_partial_floats floats and
  // split_counter_count zeroed counters, left zeroed after each launch. Without it K is not split.
  float* split_partials = nullptr;
  size_t split_partial_floats = 0;
  unsigned* split_counters = nullptr;
  int split_counter_count = 0;
};

// Largest M the skinny kernel takes; larger M goes to the wgmma or the tiled kernel.
constexpr int kSkinnyMaxRows = 64;

// The split workspace (GemmParams::split_*) with which gemm() makes every split it would make for AddFloat outputs
// at most N wide and K deep, at any M, on a device of `sms` SMs; with less, a split that does not fit is not made.
struct GemmSplitWorkspace {
  size_t partial_floats = 0;
  size_t counters = 0;
};
GemmSplitWorkspace gemmSplitWorkspace(int N, int K, int sms);
// Its parts per kernel (gemm_skinny.cu, gemm_wgmma.cu).
size_t gemmSkinnySplitFloats(int N);
size_t gemmWgmmaSplitFloats(int N, int K, int sms);

// Picks the kernel from the dtype, M and the device. Returns cudaErrorInvalidValue for unsupported shapes or
// alignment.
cudaError_t gemm(const GemmParams& params, cudaStream_t stream);
cudaError_t gemmTiled(const GemmParams& params, cudaStream_t stream);
cudaError_t gemmSkinny(const GemmParams& params, cudaStream_t stream);
cudaError_t gemmSimt(const GemmParams& params, cudaStream_t stream);  // F32 only; ignores pdl
// cudaErrorNotSupported unless gemmPrepare found the wgmma kernel usable on the current device.
cudaError_t gemmWgmma(const GemmParams& params, cudaStream_t stream);
// Decode rows (M ≤ kSkinnyMaxRows) on the wgmma kernel: K in parts fixed by N, K and the SM count over a cluster of
// blocks per 64-row tile, added in order through distributed shared memory, so a row's bits do not depend on M.
cudaError_t gemmWgmmaDecode(const GemmParams& params, cudaStream_t stream);
// Raises the dynamic shared-memory limits of the tiled and wgmma kernels and finds out whether the current device
// runs the wgmma kernel (call once per device before graph capture; until then prefill uses the tiled kernel).
cudaError_t gemmPrepare();
cudaError_t gemmTiledPrepare();
cudaError_t gemmWgmmaPrepare();
bool gemmWgmmaReady();  // on the current device
// Whether gemm() honours row_invariant on the current device for dtype (the wgmma kernel, or the SIMT kernel of
// F32); elsewhere the tiled and skinny kernels' sums depend on M.
bool gemmRowInvariance(DType dtype);

// y = gelu_erf(x) elementwise over n elements of dtype (BF16, F16 or F32); y may alias x.
struct GeluParams {
  const void* x = nullptr;
  void* y = nullptr;
  int64_t n = 0;
  DType dtype = DType::BF16;
};
cudaError_t gelu(const GeluParams& params, cudaStream_t stream);

}  // namespace flashmpt
