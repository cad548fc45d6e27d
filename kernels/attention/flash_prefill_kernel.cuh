// FlashAttention-2 style prefill kernel (mma.sync, sm80+). One CTA per (query tile, head, batch); 4 warps,
// each owning 16 or 32 query rows (one or two m16 tiles) and the full head_dim of the output. Per key block:
//   S = Q K^T (ldmatrix from swizzled shared memory, mma m16n8k16, fp32 accumulate)
//   scale (and ALiBi) in the exp2 domain, mask only blocks crossing the diagonal / the end of the keys,
//   online softmax in registers, P rounded to the input type, O += P V (V via ldmatrix.trans).
// Loads overlap compute (see kStages in PrefillTraits); the tile shapes in use are at the end of this file.
// Key blocks run from the last to the first, so the blocks that need masking come first and the rest of the
// loop carries no mask code.
#pragma once
#include <cuda_runtime.h>
#include <type_traits>

#include "alibi.cuh"
#include "attention_params.h"
#include "mask.cuh"
#include "mma.cuh"
#include "softmax.cuh"
#include "static_switch.h"
#include "kernels/common/device.h"

namespace flashmpt {
namespace attn {

// Tile shape: kBlockM queries x kBlockN keys per step, kWarps warps each owning kBlockM / kWarps query rows.
// kStages: 1 = one K and one V buffer, loads overlapped as in FlashAttention-2 (V[n] during Q K[n]^T, K[n-1]
// during softmax and P V[n]); 2 = double-buffered K and V, block n-1 streams in during all of step n.
template <typename T_, int kHeadDim_, int kBlockM_, int kBlockN_, int kWarps_, int kMinBlocksPerSM_, int kStages_>
struct PrefillTraits {
  using T = T_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kMinBlocksPerSM = kMinBlocksPerSM_;
  static constexpr int kStages = kStages_;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kMT = kBlockM / kWarps / 16;  // m16 tiles per warp (rows of a warp: 16 * kMT)
  static constexpr int kNT = kBlockN / 8;            // n8 tiles of a score block
  static constexpr int kDT = kHeadDim / 8;           // n8 tiles of the output
  static constexpr int kChunks = kHeadDim / 8;       // 16-byte chunks per row
  static constexpr int kTileBytes = kBlockN * kHeadDim * int(sizeof(T));  // one K or V block
  static constexpr int kSmemBytes = kBlockM * kHeadDim * int(sizeof(T)) + 2 * kStages * kTileBytes;
  static_assert(kChunks >= 8, "the swizzle permutes 8 chunks per row");
  static_assert(kMT >= 1 && kBlockM == kMT * 16 * kWarps && kBlockN % 16 == 0, "tile shape");
  static_assert(kStages == 1 || kStages == 2, "pipeline depth");
  static_assert((kTileBytes & (kTileBytes - 1)) == 0, "stages are toggled by XOR");
};

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][kHeadDim] shared tile. XOR-ing the chunk
// index with the row's low 3 bits puts the 8 rows an ldmatrix phase reads (same logical chunk) in 8 different
// bank groups; without it rows are 128/256 bytes apart and all hit the same banks.
template <int kHeadDim>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}

// cp.async of a [kRows][kHeadDim] tile; rows >= rows_valid become zeros (a zero V row keeps 0 * garbage out
// of P V; a zero Q row just gives an unused output row). Each thread copies one fixed chunk column of rows
// r0, r0 + kRowsPerPass, ...: one pointer and one stride, so nothing per row stays live across the main loop.
template <typename Tr, int kRows>
__device__ __forceinline__ void load_tile(uint32_t smem, const typename Tr::T* g, int64_t row_stride,
                                          int rows_valid, int tid) {
  constexpr int kRowsPerPass = Tr::kThreads / Tr::kChunks;
  static_assert(Tr::kThreads % Tr::kChunks == 0 && kRows % kRowsPerPass == 0, "tile must split evenly");
  const int r0 = tid / Tr::kChunks, chunk = tid % Tr::kChunks;
  const typename Tr::T* src = g + r0 * row_stride + chunk * 8;
  const uint32_t dst = smem + swz<Tr::kHeadDim>(r0, chunk) * int(sizeof(typename Tr::T));
#pragma unroll 1  // unrolled, the per-row offsets get hoisted out of the main loop and cost registers
  for (int i = 0; i < kRows / kRowsPerPass; ++i) {
    const bool valid = i * kRowsPerPass + r0 < rows_valid;
    // r0 + i*kRowsPerPass has the same low 3 bits as r0: the swizzle is the same, the offset a constant.
    cpAsync16(dst + i * kRowsPerPass * Tr::kHeadDim * int(sizeof(typename Tr::T)),
                valid ? src + i * kRowsPerPass * row_stride : g, valid);
  }
}

// kPacked: FlashAttentionParams::seg_row0 / seg_len give each batch entry's rows (short-prompt tile only: a length
// read from memory stays in a register, which the long tile has none to spare for).
template <typename Tr, bool kCausal, bool kAlibi, bool kPacked = false>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM)
    flash_prefill_kernel(const FlashAttentionParams p, bool longest_first) {
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, BM = Tr::kBlockM, BN = Tr::kBlockN;
  constexpr int kMT = Tr::kMT, kNT = Tr::kNT, kDT = Tr::kDT;

  extern __shared__ uint4 smem_raw[];  // uint4: 16-byte alignment for cp.async and ldmatrix
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + BM * D;
  T* sV = sK + Tr::kStages * BN * D;

  // The block scheduler starts blocks in linear order, read here as (batch, head) pair after pair, each pair's query
  // tiles last first (with causal they see the most keys), or with longest_first (prefill_longest_first) as tile rank
  // after rank over all pairs: every pair's longest tile starts before any shorter one and short tiles fill the tail.
  // (x = query tile, y = head, z = batch only size the grid within its limits.)
  const int64_t pairs = int64_t(gridDim.y) * gridDim.z;
  const int64_t linear = blockIdx.x + int64_t(gridDim.x) * (blockIdx.y + int64_t(gridDim.y) * blockIdx.z);
  const int tile_rank = int(longest_first ? linear / pairs : linear % gridDim.x);
  const int64_t pair = longest_first ? linear % pairs : linear / gridDim.x;
  const int m_block = kCausal ? int(gridDim.x) - 1 - tile_rank : tile_rank;
  const int h = int(pair % gridDim.y), b = int(pair / gridDim.y);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int m0 = m_block * BM;
  // Packed prompts: this entry's rows and length; tiles past a shorter prompt's end have nothing to do.
  const int seqlen_q = kPacked ? p.seg_len[b] : p.seqlen_q, seqlen_k = kPacked ? seqlen_q : p.seqlen_k;
  if (kPacked && m0 >= seqlen_q) return;
  const int64_t row0 = kPacked ? p.seg_row0[b] : 0;
  const int offset = seqlen_k - seqlen_q;  // absolute position of query 0 (bottom-right causal alignment)
  const int rows_valid = min(BM, seqlen_q - m0);

  auto entry = [&](int64_t batch_stride, int64_t row_stride) { return kPacked ? row0 * row_stride : b * batch_stride; };
  const T* q = static_cast<const T*>(p.q) + entry(p.q_batch_stride, p.q_row_stride) + h * p.q_head_stride + m0 * p.q_row_stride;
  const T* k = static_cast<const T*>(p.k) + entry(p.k_batch_stride, p.k_row_stride) + h * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + entry(p.v_batch_stride, p.v_row_stride) + h * p.v_head_stride;
  T* o = static_cast<T*>(p.o) + entry(p.o_batch_stride, p.o_row_stride) + h * p.o_head_stride + m0 * p.o_row_stride;

  // Key blocks this tile sees: with causal, up to the last valid row's position.
  int n_blocks = ceil_div(seqlen_k, BN);
  if (kCausal) n_blocks = min(n_blocks, ceil_div(max(0, min(m0 + rows_valid + offset, seqlen_k)), BN));
  if (n_blocks <= 0) {  // every row of the tile precedes the first key (seqlen_q > seqlen_k): output 0
    for (int idx = tid; idx < rows_valid * Tr::kChunks; idx += Tr::kThreads)
      *reinterpret_cast<uint4*>(o + (idx / Tr::kChunks) * p.o_row_stride + (idx % Tr::kChunks) * 8) =
          make_uint4(0, 0, 0, 0);
    return;
  }

  int n = n_blocks - 1;
  load_tile<Tr, BM>(sharedAddress(sQ), q, p.q_row_stride, rows_valid, tid);
  load_tile<Tr, BN>(sharedAddress(sK), k + int64_t(n) * BN * p.k_row_stride, p.k_row_stride, seqlen_k - n * BN, tid);
  if constexpr (Tr::kStages == 2)
    load_tile<Tr, BN>(sharedAddress(sV), v + int64_t(n) * BN * p.v_row_stride, p.v_row_stride, seqlen_k - n * BN, tid);
  cpAsyncCommit();

  float acc_o[kMT][kDT][4];
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int di = 0; di < kDT; ++di)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc_o[mi][di][r] = 0.f;
  OnlineSoftmax<kMT> softmax;

  const float scale_log2 = p.softmax_scale * kLog2e;
  const float slope_log2 = kAlibi ? p.alibi_slopes[h] * kLog2e : 0.f;
  const int warp_row0 = warp * kMT * 16;
  // Accumulator element [mi][ni][r] of this lane is at tile row warp_row0 + mi*16 + lane/4 + (r/2)*8 and
  // block column ni*8 + (lane%4)*2 + r%2 (PTX's m16n8 C layout).
  const int row_pos0 = m0 + warp_row0 + lane / 4 + offset;  // absolute position of row [0][.][0]
  const int col0 = (lane % 4) * 2;

  // ldmatrix addresses (lane -> row of one of the four 8x8 matrices) as swizzled byte offsets of k16 slice 0.
  // The chunk of slice kk is chunk + 2*kk, and since 2*kk never carries into the row bits, its swizzled offset
  // is (offset of slice 0) ^ (kk * 32): one XOR per ldmatrix instead of a register per address.
  const int r7 = lane & 7;
  // Q (A operand, 16x16): matrices {rows 0-7, 8-15} x {cols 0-7, 8-15} in a0..a3 order.
  const uint32_t q_off = (warp_row0 + r7 + ((lane >> 3) & 1) * 8) * D * 2 + (((lane >> 4) ^ r7) << 4);
  // K (B operand of S = Q K^T, not transposed): b0,b1 of n-tile 2j from keys 0-7, b0,b1 of 2j+1 from keys 8-15.
  const uint32_t k_off = (r7 + (lane >> 4) * 8) * D * 2 + ((((lane >> 3) & 1) ^ r7) << 4);
  // V (B operand of O = P V, transposed): b0,b1 from keys 0-7 / 8-15 of dims 0-7, then of dims 8-15.
  const uint32_t v_off = (r7 + ((lane >> 3) & 1) * 8) * D * 2 + (((lane >> 4) ^ r7) << 4);
  const uint32_t sQ_addr = sharedAddress(sQ), sK_base = sharedAddress(sK), sV_base = sharedAddress(sV);
  uint32_t stage = 0;  // byte offset of the current K/V stage (always 0 with one stage)

  auto step = [&](auto mask_tag) {
    constexpr bool kMask = decltype(mask_tag)::value;
    cpAsyncWait<0>();
    __syncthreads();  // block n (and Q) landed; every warp is done with step n+1's buffers
    if constexpr (Tr::kStages == 2) {
      if (n > 0) {
        const uint32_t other = stage ^ Tr::kTileBytes;
        load_tile<Tr, BN>(sK_base + other, k + int64_t(n - 1) * BN * p.k_row_stride, p.k_row_stride,
                          seqlen_k - (n - 1) * BN, tid);
        load_tile<Tr, BN>(sV_base + other, v + int64_t(n - 1) * BN * p.v_row_stride, p.v_row_stride,
                          seqlen_k - (n - 1) * BN, tid);
        cpAsyncCommit();
      }
    } else {
      load_tile<Tr, BN>(sV_base, v + int64_t(n) * BN * p.v_row_stride, p.v_row_stride, seqlen_k - n * BN, tid);
      cpAsyncCommit();
    }

    float s[kMT][kNT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
        for (int r = 0; r < 4; ++r) s[mi][ni][r] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) ldmatrixX4(a[mi], sQ_addr + ((q_off ^ (kk << 5)) + mi * 16 * D * 2));
#pragma unroll
      for (int nn = 0; nn < BN / 16; ++nn) {
        uint32_t bk[4];
        ldmatrixX4(bk, sK_base + stage + ((k_off ^ (kk << 5)) + nn * 16 * D * 2));
#pragma unroll
        for (int mi = 0; mi < kMT; ++mi) {
          mma16816<T>(s[mi][2 * nn], a[mi], bk[0], bk[1]);
          mma16816<T>(s[mi][2 * nn + 1], a[mi], bk[2], bk[3]);
        }
      }
    }

    if constexpr (kAlibi) scale_and_alibi(s, scale_log2, slope_log2, n * BN + col0 - row_pos0);
    else scale_scores(s, scale_log2);
    if constexpr (kMask) apply_mask<kCausal>(s, row_pos0, n * BN + col0, seqlen_k);

    if constexpr (Tr::kStages == 1) {
      cpAsyncWait<0>();
      __syncthreads();  // V[n] landed; every warp is done reading K[n]
      if (n > 0) {
        load_tile<Tr, BN>(sK_base, k + int64_t(n - 1) * BN * p.k_row_stride, p.k_row_stride, seqlen_k - (n - 1) * BN,
                          tid);
        cpAsyncCommit();
      }
    }

    softmax.update(s, acc_o);

    // The C layout of two adjacent n8 score tiles is the A layout of one k16 slice: P stays in registers,
    // packed to the input type at once so the fp32 scores die before the P V loop.
    uint32_t pa[BN / 16][kMT][4];
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        pa[kk][mi][0] = pack2<T>(s[mi][2 * kk][0], s[mi][2 * kk][1]);
        pa[kk][mi][1] = pack2<T>(s[mi][2 * kk][2], s[mi][2 * kk][3]);
        pa[kk][mi][2] = pack2<T>(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
        pa[kk][mi][3] = pack2<T>(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
      }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
      for (int dd = 0; dd < D / 16; ++dd) {
        uint32_t bv[4];
        ldmatrixX4Trans(bv, sV_base + stage + ((v_off ^ (dd << 5)) + kk * 16 * D * 2));
#pragma unroll
        for (int mi = 0; mi < kMT; ++mi) {
          mma16816<T>(acc_o[mi][2 * dd], pa[kk][mi], bv[0], bv[1]);
          mma16816<T>(acc_o[mi][2 * dd + 1], pa[kk][mi], bv[2], bv[3]);
        }
      }
    }
    if constexpr (Tr::kStages == 2) stage ^= Tr::kTileBytes;
  };

  // A block needs the mask if it reaches past the keys or, with causal, past the first row's position.
  auto needs_mask = [&](int nb) {
    return (nb + 1) * BN > seqlen_k || (kCausal && (nb + 1) * BN - 1 > m0 + offset);
  };
  for (; n >= 0 && needs_mask(n); --n) step(std::true_type{});
  for (; n >= 0; --n) step(std::false_type{});

  softmax.finalize(acc_o);

  // Stage the tile through this warp's own rows of sQ (no other warp reads them), then 16-byte stores.
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = warp_row0 + mi * 16 + lane / 4 + hh * 8;
#pragma unroll
      for (int di = 0; di < kDT; ++di)
        *reinterpret_cast<uint32_t*>(sQ + swz<D>(row, di) + col0) =
            pack2<T>(acc_o[mi][di][hh * 2], acc_o[mi][di][hh * 2 + 1]);
    }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < BM * Tr::kChunks / Tr::kThreads; ++i) {
    const int idx = i * Tr::kThreads + tid;
    const int row = idx / Tr::kChunks, chunk = idx % Tr::kChunks;
    if (row < rows_valid)
      *reinterpret_cast<uint4*>(o + row * p.o_row_stride + chunk * 8) =
          *reinterpret_cast<const uint4*>(sQ + swz<D>(row, chunk));
  }
}

// The grid's order (the kernel's first lines): longest tiles first over all pairs for prompts past
// kFlashShortQueries queries; shorter ones keep each pair's tiles together, whose keys and values then stay in L2
// between them. H200, session 11 (dev/attention, causal + ALiBi, one call), TFLOP/s before → after: 2048 × 1 151 →
// 171, 2048 × 8 244 → 257, 8192 × 2 274 → 289; 512 × 32 181 → 161 over all pairs (in groups of ~2 waves of pairs,
// another call: 162), hence kept together.
inline bool prefill_longest_first(const FlashAttentionParams& p) { return p.seqlen_q > kFlashShortQueries; }

// Launch of one tile configuration; causal and ALiBi become template constants. Params already validated.
template <typename Tr, bool kPacked = false>
cudaError_t launch_flash_prefill(const FlashAttentionParams& p, cudaStream_t stream) {
  return BOOL_SWITCH(p.causal, kCausal, [&] {
    return BOOL_SWITCH(p.alibi_slopes != nullptr, kAlibi, [&] {
      auto kernel = flash_prefill_kernel<Tr, kCausal, kAlibi, kPacked>;
      cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes);
      if (err != cudaSuccess) return err;
      const dim3 grid(ceil_div(p.seqlen_q, Tr::kBlockM), p.n_heads, p.batch);
      kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p, prefill_longest_first(p));
      return cudaGetLastError();
    });
  });
}

// Tile configurations, picked by the sweep in dev/attention.cu (bench/RESULTS-attention.md). Long query sets:
// 128-row tiles over 32-key blocks, double-buffered (4 warps of 32 rows; 64-key blocks need more than the 255
// registers a thread has and spill). Short ones (up to kFlashShortQueries queries): 64-row tiles, 3 CTAs per SM;
// less padding, and with causal half the diagonal work. Longer ones whose long-tile grid would fit one wave: 64-row
// tiles double-buffered, 2 CTAs per SM.
template <typename T, int kHeadDim>
using LongPrefillTraits = PrefillTraits<T, kHeadDim, 128, 32, 4, 2, 2>;
template <typename T, int kHeadDim>
using ShortPrefillTraits = PrefillTraits<T, kHeadDim, 64, 64, 4, 3, 1>;
template <typename T, int kHeadDim>
using OneWavePrefillTraits = PrefillTraits<T, kHeadDim, 64, 64, 4, 2, 2>;

template <typename T, int kHeadDim>
cudaError_t run_flash_prefill(const FlashAttentionParams& p, cudaStream_t stream) {
  if (p.seg_len) {
    if (p.seqlen_q > kFlashShortQueries) return cudaErrorInvalidValue;
    return launch_flash_prefill<ShortPrefillTraits<T, kHeadDim>, true>(p, stream);
  }
  if (p.seqlen_q <= kFlashShortQueries) return launch_flash_prefill<ShortPrefillTraits<T, kHeadDim>>(p, stream);
  // A long grid within one wave (two CTAs an SM) finishes with its longest causal tiles while the SMs of the short
  // ones idle: 64-row tiles spread that tail. A 2048-token prompt alone (16 × 16 tiles), H200: 141.6 → 154.5 TFLOP/s
  // in the short tile (session 10, dev/attention); with the longest tiles first 178.1 in the short tile, 198.6 in
  // this one (session 11, one call).
  int sms = 0;
  if (const cudaError_t err = multiprocessorCount(&sms); err != cudaSuccess) return err;
  const int64_t long_ctas = int64_t(ceil_div(p.seqlen_q, LongPrefillTraits<T, kHeadDim>::kBlockM)) * p.n_heads * p.batch;
  if (long_ctas <= int64_t(LongPrefillTraits<T, kHeadDim>::kMinBlocksPerSM) * sms)
    return launch_flash_prefill<OneWavePrefillTraits<T, kHeadDim>>(p, stream);
  return launch_flash_prefill<LongPrefillTraits<T, kHeadDim>>(p, stream);
}

}  // namespace attn
}  // namespace flashmpt
