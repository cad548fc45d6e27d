// Online softmax over key blocks (FlashAttention-2): per query row a running max and a running sum; each new
// block of scores (already in the log2 domain, masked entries -inf) raises the max, rescales the output
// accumulator and the sum by exp2(old_max - new_max), and becomes p = exp2(s - new_max) in place. The sum is
// kept per thread and reduced across the row's 4 threads once, at the end.
#pragma once
#include <math_constants.h>

namespace flashmpt {
namespace attn {

// ex2.approx: one MUFU instruction (exp2f adds range handling we do not need); exp2(-inf) = 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Rows of one thread: two per 16-row m-tile (lane/4 and lane/4 + 8); each row spread over the 4 lanes of a quad.
template <int kMT>
struct OnlineSoftmax {
  float row_max[kMT][2];
  float row_sum[kMT][2];

  __device__ __forceinline__ OnlineSoftmax() {
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        row_max[mi][h] = -CUDART_INF_F;
        row_sum[mi][h] = 0.f;
      }
  }

  template <int kNT, int kDT>
  __device__ __forceinline__ void update(float (&s)[kMT][kNT][4], float (&acc_o)[kMT][kDT][4]) {
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = row_max[mi][h];
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni) mx = fmaxf(mx, fmaxf(s[mi][ni][h * 2], s[mi][ni][h * 2 + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // A row with every key masked so far keeps max -inf; subtract 0 then so p is 0, not NaN.
        const float m_use = mx == -CUDART_INF_F ? 0.f : mx;
        const float corr = fast_exp2(row_max[mi][h] - m_use);
        row_max[mi][h] = mx;
        float sum = row_sum[mi][h] * corr;
#pragma unroll
        for (int di = 0; di < kDT; ++di) {
          acc_o[mi][di][h * 2] *= corr;
          acc_o[mi][di][h * 2 + 1] *= corr;
        }
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const float p = fast_exp2(s[mi][ni][h * 2 + c] - m_use);
            s[mi][ni][h * 2 + c] = p;
            sum += p;
          }
        row_sum[mi][h] = sum;
      }
  }

  // acc_o /= row sum; rows that saw no key (sum 0) give 0.
  template <int kDT>
  __device__ __forceinline__ void finalize(float (&acc_o)[kMT][kDT][4]) {
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = row_sum[mi][h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
#pragma unroll
        for (int di = 0; di < kDT; ++di) {
          acc_o[mi][di][h * 2] *= inv;
          acc_o[mi][di][h * 2 + 1] *= inv;
        }
      }
  }
};

}  // namespace attn
}  // namespace flashmpt
