// Masking of one score block in registers: keys past seqlen_k, and with causal keys after the query's absolute
// position (bottom-right alignment: query row i sits at seqlen_k - seqlen_q + i). Only the key blocks that
// cross the diagonal or the end of the keys call this; the others skip it (see the two loops of the kernel).
#pragma once
#include <math_constants.h>

namespace flashmpt {
namespace attn {

// `row0`: absolute position of this thread's element [mi=0][ni=0][0]; `col0`: its key index. Layout as in
// scale_and_alibi (alibi.cuh).
template <bool kCausal, int kMT, int kNT>
__device__ __forceinline__ void apply_mask(float (&s)[kMT][kNT][4], int row0, int col0, int seqlen_k) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pos = row0 + mi * 16 + h * 8;
      // keys j < limit are visible to this row
      const int limit = kCausal ? min(seqlen_k, pos + 1) : seqlen_k;
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
        for (int c = 0; c < 2; ++c)
          if (col0 + ni * 8 + c >= limit) s[mi][ni][h * 2 + c] = -CUDART_INF_F;
    }
}

}  // namespace attn
}  // namespace flashmpt
