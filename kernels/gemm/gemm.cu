// GEMM entry point: checks the layout contract once, then sends fp32 to the SIMT kernel, decode-sized M to the
// skinny kernel and everything else to the wgmma kernel where gemmPrepare found it usable, else to the tiled one;
// a LayerNorm that follows (GemmParams::ln) is folded into the skinny kernel or launched after the GEMM.
#include <cstdint>

#include "kernels/gemm/gemm.h"

namespace flashmpt {
namespace {

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

cudaError_t gemm(const GemmParams& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.K <= 0 || p.K % 8 != 0 || p.lda % 8 != 0 || p.ldw % 8 != 0 || p.lda < p.K ||
      p.ldw < p.K || p.ldc < p.N || !aligned16(p.a) || !aligned16(p.w) || (reinterpret_cast<uintptr_t>(p.c) & 7) != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.ln.y && (p.out != GemmOut::AddFloat || p.ln.x != p.c || p.ln.rows != p.M || p.ln.cols != p.N ||
                 p.ldc != p.N || p.ln.x_dtype != DType::F32)) {
    return cudaErrorInvalidValue;
  }
  const bool skinny = p.dtype != DType::F32 && p.M <= kSkinnyMaxRows;
  if (skinny && layerNormFolds(p)) return gemmSkinny(p, stream);
  GemmParams alone = p;
  alone.ln.y = nullptr;
  const cudaError_t err = p.dtype == DType::F32 ? gemmSimt(alone, stream)
                          : skinny              ? gemmSkinny(alone, stream)
                          : gemmWgmmaReady()    ? gemmWgmma(alone, stream)
                                                : gemmTiled(alone, stream);
  return err != cudaSuccess || !p.ln.y ? err : layerNorm(p.ln, stream);
}

bool layerNormFolds(const GemmParams& p) {
  return p.ln.y && p.ln_ticket && p.M <= kLayerNormFoldRows && size_t(p.N) * sizeof(float) <= 48 * 1024;
}

cudaError_t gemmPrepare() {
  const cudaError_t err = gemmTiledPrepare();
  return err != cudaSuccess ? err : gemmWgmmaPrepare();
}

}  // namespace flashmpt
