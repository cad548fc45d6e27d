// GEMM entry point: checks the layout contract once, then sends fp32 to the SIMT kernel, row-invariant calls to the
// wgmma kernel where gemmPrepare found it usable, other decode-sized M to the skinny kernel (or, when asked, to the
// wgmma kernel's decode layout), and everything else to the wgmma kernel, else to the tiled one.
#include <algorithm>
#include <cstdint>

#include "kernels/gemm/gemm.h"

namespace flashmpt {

cudaError_t gemm(const GemmParams& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.K <= 0 || p.K % 8 != 0 || p.lda % 8 != 0 || p.ldw % 8 != 0 || p.lda < p.K ||
      p.ldw < p.K || p.ldc < p.N || !aligned16(p.a) || !aligned16(p.w) || (reinterpret_cast<uintptr_t>(p.c) & 7) != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.dtype == DType::F32) return gemmSimt(p, stream);
  const bool wgmma = gemmWgmmaReady();
  if (p.M <= kSkinnyMaxRows && !(p.row_invariant && wgmma)) {
    return p.wgmma_decode && wgmma ? gemmWgmmaDecode(p, stream) : gemmSkinny(p, stream);
  }
  return wgmma ? gemmWgmma(p, stream) : gemmTiled(p, stream);
}

bool gemmRowInvariance(DType dtype) { return dtype == DType::F32 || gemmWgmmaReady(); }

GemmSplitWorkspace gemmSplitWorkspace(int N, int K, int sms) {
  GemmSplitWorkspace w;
  w.partial_floats = std::max(gemmSkinnySplitFloats(N), gemmWgmmaSplitFloats(N, K, sms));
  // Tickets: one per skinny block of 16 outputs, or per wgmma output tile of a split for the rows (≤ 2 per SM); the
  // fixup kernel after a row-invariant split needs none.
  w.counters = std::max(size_t(N) / 16 + 1, size_t(sms) * 2);
  return w;
}

cudaError_t gemmPrepare() {
  const cudaError_t err = gemmTiledPrepare();
  return err != cudaSuccess ? err : gemmWgmmaPrepare();
}

}  // namespace flashmpt
