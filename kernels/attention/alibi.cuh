// ALiBi in registers: bias = slope_h * (j - i) for key position j and absolute query position i. The kernels
// work in the exp2 domain (scores pre-multiplied by log2(e)), so the slope is pre-multiplied by log2(e) too.
// j - i is formed exactly (integers, then floats below 2^24), so the bias carries a rounding or two whatever the
// sequence length: ALiBi extrapolates to any length the memory allows.
#pragma once

namespace flashmpt {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;

// Scores of one mma accumulator block (see flash_prefill_kernel.cuh for the layout): s <- s*scale_log2 +
// slope_log2*(j - i). `dist0` is j - i of element [mi=0][ni=0][0] of this thread: rows step by 8 within a
// 16-row tile, by 16 between tiles; columns by 1 within a pair, by 8 between n-tiles.
template <int kMT, int kNT>
__device__ __forceinline__ void scale_and_alibi(float (&s)[kMT][kNT][4], float scale_log2, float slope_log2,
                                                int dist0) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // slope * (row_dist + c) as fma(slope, c, slope * row_dist): two FFMAs per element; the column offset c
      // is a compile-time constant, and the extra rounding is one ulp of the bias.
      const float row_bias = slope_log2 * static_cast<float>(dist0 - mi * 16 - h * 8);
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float& x = s[mi][ni][h * 2 + c];
          x = fmaf(x, scale_log2, fmaf(slope_log2, static_cast<float>(ni * 8 + c), row_bias));
        }
    }
}

template <int kMT, int kNT>
__device__ __forceinline__ void scale_scores(float (&s)[kMT][kNT][4], float scale_log2) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
      for (int r = 0; r < 4; ++r) s[mi][ni][r] *= scale_log2;
}

}  // namespace attn
}  // namespace flashmpt
