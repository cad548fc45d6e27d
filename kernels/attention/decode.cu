// Decode attention (flash-decoding): one query per (batch, head) against its cached keys. Memory bound: every
// K and V byte is read once, so the design is about bytes in flight, not arithmetic. One kernel, grid
// (split CTAs, head, batch):
//   A CTA takes the splits blockIdx.x, blockIdx.x + gridDim.x, ... of its (batch, head) in turn: every split when
//   the batch is small (each split its own CTA), one CTA walking them all when the (batch, head) pairs alone fill
//   the GPU. A grid of every split for every pair spends its time on CTAs that exit at once: a 64-row serving step
//   at 130 keys ran 18 split CTAs per pair of which 16 had no keys (decode_split_ctas).
//   For each split the CTA walks its slice of the keys in tiles; each thread owns one 16-byte column of head_dim
//   and loads that column of 4 key rows (K and V) per tile, two tiles in flight (register double buffering; a
//   walking CTA loads the next split's first tile before merging the current one). Scores are reduced
//   over the row's threads with shuffles; each group of threads sharing a row keeps its own running
//   (max, sum, acc) in fp32, and the groups are merged once at the end.
//   A sequence with one split writes its output at once. Otherwise each split writes its unnormalized output
//   and (max, sum) to the workspace; a CTA that did every split of its pair combines them, else each CTA takes
//   a ticket for its splits and the last to finish combines them, with their log-sum-exp weights, in split order,
//   so the result depends neither on which came last nor on how splits were dealt to CTAs.
//   New-token mode (DecodeNewToken, the engine's decode step): every CTA computes the QK-LayerNorm statistics of
//   its row over d_model (8 KB from L2, cheaper than a kernel boundary), normalizes its head of q, and the split
//   holding the last key writes the new key and value into the cache and attends to them from registers.
// A sequence's keys are cut into splits of a fixed size that depends on max_seq_len alone (decode_split_keys), so
// its partition, and with it every sum, is the same whatever batch it runs in (batch invariance) and a captured
// graph stays valid; splits past a sequence's length exit at once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "alibi.cuh"
#include "attention_params.h"
#include "mma.cuh"
#include "softmax.cuh"
#include "static_switch.h"
#include "kernels/common/device.h"
#include "kernels/common/pdl.cuh"

namespace flashmpt {
namespace attn {

template <int kHeadDim>
struct DecodeTraits {
  static constexpr int kThreads = 128;
  static constexpr int kThreadsPerRow = kHeadDim / 8;             // one 16-byte vector each
  static constexpr int kRowsPerPass = kThreads / kThreadsPerRow;  // row groups of a CTA: 8 (hd128) or 16 (hd64)
  static constexpr int kPasses = 4;                               // rows per thread per tile, loaded together
  static constexpr int kTileKeys = kRowsPerPass * kPasses;        // 32 (hd128) or 64 (hd64)
};
constexpr int kSplitKeys = 128;  // keys per split at least: a multiple of every tile's keys
// At most this many splits: longer contexts get longer splits. 32 keeps a batch-1 call at 8k / 16k keys to one wave
// of CTAs (16 heads × 32 on 132 SMs at 4 CTAs each); 64 made two (H100: 8k 68% → 77% of copy bandwidth, 16k 82% →
// 86%, bench/NOTES-decode.md "N"). It also bounds the workspace.
constexpr int kMaxSplits = 32;
// CTAs resident per SM (the kernel's launch bounds: registers for four).
constexpr int kDecodeCtasPerSm = 4;
// Keys of a CTA's first split asked of L2 before its programmatic wait, the first tile (loaded into registers)
// included: one tile more in flight while the projection finishes and the new token's statistics are taken. Measured
// (H200, session 10, bench/RESULTS.md): 64 keys took batch 1 at 8k keys 69 → 71% of copy, batch 16 at 2048 91 → 95%,
// the 64-row engine step 2.14 → 2.12 ms; 128 or 256 keys, or also the next split of a walking CTA, were slower.
constexpr int kPrefetchKeys = 64;

__host__ __device__ constexpr int cdiv(int a, int b) { return (a + b - 1) / b; }

// Keys per split for an engine of max_seq_len tokens, and the splits of the longest sequence.
inline int decode_split_keys(int max_seq_len) {
  const int keys = cdiv(cdiv(max_seq_len, kMaxSplits), kSplitKeys) * kSplitKeys;
  return keys > kSplitKeys ? keys : kSplitKeys;
}
inline int decode_max_splits(int max_seq_len) { return cdiv(max_seq_len, decode_split_keys(max_seq_len)); }

__device__ __forceinline__ uint4 load_nc(const void* ptr) {
  uint4 r;
  // Streamed once per step: skip L1.
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(ptr));
  return r;
}

// The new token's q (scaled for exp2), and its key and value at this thread's 8 columns of head h, from the raw
// Wqkv row: clip, then QK-LayerNorm with fp32 two-pass statistics over d_model, each rounded to T as the cache
// and the unfused epilogue store them.
template <typename T, int kHeadDim>
__device__ void new_token_columns(const DecodeAttentionParams& p, int b, int h, int col, float scale_log2,
                                  float (&q)[8], uint4& k_new, uint4& v_new) {
  const DecodeNewToken& nt = p.new_token;
  const int d = p.n_heads * kHeadDim, tid = threadIdx.x;
  const T* row = static_cast<const T*>(nt.qkv) + int64_t(b) * 3 * d;
  auto clipped = [&](const T* at, float (&x)[8]) {
    unpack8<T>(*reinterpret_cast<const uint4*>(at), x);
    if (nt.clip > 0.f) {
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = fminf(fmaxf(x[e], -nt.clip), nt.clip);
    }
  };
  __shared__ float scratch[2][32];
  // Block-wide (q, k) sums with one barrier pair.
  auto block_sum2 = [&](float a, float c) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      a += __shfl_xor_sync(0xffffffffu, a, off);
      c += __shfl_xor_sync(0xffffffffu, c, off);
    }
    __syncthreads();  // scratch may still be read by the previous reduction
    if (tid % 32 == 0) scratch[0][tid / 32] = a, scratch[1][tid / 32] = c;
    __syncthreads();
    a = c = 0.f;
    for (int w = 0; w < int(blockDim.x) / 32; ++w) a += scratch[0][w], c += scratch[1][w];
    return make_float2(a, c);
  };

  // This thread's own columns of q, k and v and their QK-LayerNorm weights do not depend on the statistics: their
  // loads go out first, so they travel with the statistics' loads (one L2 round trip instead of three).
  const int c = h * kHeadDim + col;
  float x[8], y[8], z[8];
  clipped(row + c, x);
  clipped(row + d + c, y);
  clipped(row + 2 * d + c, z);
  float qlw[8], qlb[8], klw[8], klb[8];  // QK-LayerNorm weight and bias
  // This thread's 8 of them (c is a multiple of 8): two 16-byte loads where aligned (32 scalar loads were a stall site).
  auto load8 = [&](const float* w, float (&x)[8]) {
    if (!w) {
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = 0.f;
    } else if (aligned16(w)) {
      const float4 a = *reinterpret_cast<const float4*>(w + c), b = *reinterpret_cast<const float4*>(w + c + 4);
      x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = w[c + e];
    }
  };
  if (nt.q_ln_weight) {
    load8(nt.q_ln_weight, qlw), load8(nt.k_ln_weight, klw);
    load8(nt.q_ln_bias, qlb), load8(nt.k_ln_bias, klb);
  }

  // f(q_e, k_e) for every element of the row's clipped q and k, this thread's share; unrolled so the loads of
  // several 16-byte pieces are in flight together (the second pass finds them in L1).
  auto each_pair = [&](auto&& f) {
#pragma unroll 4
    for (int i = tid * 8; i < d; i += blockDim.x * 8) {
      float a[8], b[8];
      clipped(row + i, a);
      clipped(row + d + i, b);
#pragma unroll
      for (int e = 0; e < 8; ++e) f(a[e], b[e]);
    }
  };
  float q_mean = 0.f, k_mean = 0.f, q_rstd = 1.f, k_rstd = 1.f;
  if (nt.q_ln_weight) {
    float qs = 0.f, ks = 0.f;
    each_pair([&](float qv, float kv) { qs += qv, ks += kv; });
    const float2 sums = block_sum2(qs, ks);
    q_mean = sums.x / d, k_mean = sums.y / d;
    float qq = 0.f, kk = 0.f;
    each_pair([&](float qv, float kv) {
      qq = fmaf(qv - q_mean, qv - q_mean, qq);
      kk = fmaf(kv - k_mean, kv - k_mean, kk);
    });
    const float2 squares = block_sum2(qq, kk);
    q_rstd = rsqrtf(squares.x / d + nt.eps), k_rstd = rsqrtf(squares.y / d + nt.eps);
  }

  uint32_t kw[4], vw[4];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    if (nt.q_ln_weight) {
      x[e] = (x[e] - q_mean) * q_rstd * qlw[e] + qlb[e];
      y[e] = (y[e] - k_mean) * k_rstd * klw[e] + klb[e];
    }
    q[e] = static_cast<float>(T(x[e])) * scale_log2;
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    kw[e] = pack2<T>(y[2 * e], y[2 * e + 1]);
    vw[e] = pack2<T>(z[2 * e], z[2 * e + 1]);
  }
  k_new = make_uint4(kw[0], kw[1], kw[2], kw[3]);
  v_new = make_uint4(vw[0], vw[1], vw[2], vw[3]);
}

// kWalkSplits: fewer CTAs than splits per (batch, head), so a CTA may take several (the loop compiled in).
template <typename T, int kHeadDim, bool kAlibi, bool kNewToken, bool kWalkSplits>
__global__ void __launch_bounds__(DecodeTraits<kHeadDim>::kThreads, kDecodeCtasPerSm)
    decode_kernel(const DecodeAttentionParams p, int n_splits, int split_keys) {
  using Tr = DecodeTraits<kHeadDim>;
  constexpr int TPR = Tr::kThreadsPerRow, RPP = Tr::kRowsPerPass, P = Tr::kPasses;
  const int h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int len = min(p.seq_len[b], p.max_seq_len);
  const int n_active = len > 0 ? cdiv(len, split_keys) : 1;
  if (int(blockIdx.x) >= n_active) return;  // before the wait: idle CTAs leave the SMs at once

  const int group = tid / TPR, col = (tid % TPR) * 8;
  const KvRows rows = p.kv.sequence(b);
  const int64_t column = int64_t(h) * p.head_stride + col;
  const T* kp = static_cast<const T*>(p.k_cache) + column;
  const T* vp = static_cast<const T*>(p.v_cache) + column;
  const float scale_log2 = p.softmax_scale * kLog2e;

  float q[8];
  uint4 k_new = make_uint4(0, 0, 0, 0), v_new = k_new;  // new-token mode: key len − 1, never read from the cache
  const float slope_log2 = kAlibi ? p.alibi_slopes[h] * kLog2e : 0.f;
  const int qpos = len - 1;

  // Rows t0 + i*RPP + group of a tile of the split ending at `end` (t0 < end): all loads issued before any use. A
  // tile starts at a multiple of its keys and never straddles a KV block, so its rows are one table lookup and a
  // stride apart: the per-key block-table arithmetic was the kernel's largest instruction class (session 12).
  static_assert(kKvBlockTokens % Tr::kTileKeys == 0, "a tile inside one KV block");
  const int64_t group_offset = int64_t(group) * rows.row_stride, pass_stride = int64_t(RPP) * rows.row_stride;
  auto load = [&](uint4 (&kv)[P], uint4 (&vv)[P], int t0, int end) {
    const int64_t tile_row = rows.offset(t0) + group_offset;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int key = t0 + i * RPP + group;
      if (kNewToken && key == len - 1) {
        kv[i] = k_new;
        vv[i] = v_new;
      } else if (key < end) {
        const int64_t at = tile_row + i * pass_stride;
        kv[i] = load_nc(kp + at);
        vv[i] = load_nc(vp + at);
      } else {
        kv[i] = vv[i] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  float m = -CUDART_INF_F, l = 0.f, acc[8];  // reset at each split
  // Online softmax of one tile into this row group's (m, l, acc).
  auto consume = [&](const uint4 (&kv)[P], const uint4 (&vv)[P], int t0, int end) {
    float s[P], tile_max = -CUDART_INF_F;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      float kf[8];
      unpack8<T>(kv[i], kf);
      float dot = 0.f;
#pragma unroll
      for (int e = 0; e < 8; ++e) dot = fmaf(q[e], kf[e], dot);
#pragma unroll
      for (int off = TPR / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      const int key = t0 + i * RPP + group;
      if (kAlibi) dot = fmaf(slope_log2, static_cast<float>(key - qpos), dot);
      s[i] = key < end ? dot : -CUDART_INF_F;
      tile_max = fmaxf(tile_max, s[i]);
    }
    const float m_new = fmaxf(m, tile_max);
    const float m_use = m_new == -CUDART_INF_F ? 0.f : m_new;  // a group with no key yet
    const float corr = fast_exp2(m - m_use);
    m = m_new;
    l *= corr;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= corr;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const float pr = fast_exp2(s[i] - m_use);
      l += pr;
      float vf[8];
      unpack8<T>(vv[i], vf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = fmaf(pr, vf[e], acc[e]);
    }
  };

  // The first tile's loads go out before the wait: cached rows come from earlier steps, which no kernel of this
  // step writes, so they arrive while the projection finishes. The new key's slot, loaded as zeros, is filled in
  // once the key exists.
  uint4 ka[P], va[P], kb[P], vb[P];
  const int first_start = int(blockIdx.x) * split_keys;
  load(ka, va, first_start, min(len, first_start + split_keys));
  {  // The rest of the first kPrefetchKeys keys asked of L2 (the new token's row is not in the cache yet).
    constexpr int kLines = kHeadDim * int(sizeof(T)) / 128;  // 128-byte lines of one head's row
    const T* k_head = static_cast<const T*>(p.k_cache) + int64_t(h) * p.head_stride;
    const T* v_head = static_cast<const T*>(p.v_cache) + int64_t(h) * p.head_stride;
    const int from = first_start + Tr::kTileKeys;
    const int to = min(min(first_start + split_keys, first_start + kPrefetchKeys), len - (kNewToken ? 1 : 0));
    for (int i = tid; i < (to - from) * 2 * kLines; i += Tr::kThreads) {
      const int key = from + i / (2 * kLines), line = i % (2 * kLines);
      prefetchL2((line < kLines ? k_head : v_head) + rows.offset(key) + (line % kLines) * (128 / int(sizeof(T))));
    }
  }
  if (kNewToken && group == 0 && col % 32 == 0) {  // the head's QK-LayerNorm weights, a line (32 floats) each
    const int c = h * kHeadDim + col;
    for (const float* w : {p.new_token.q_ln_weight, p.new_token.q_ln_bias, p.new_token.k_ln_weight, p.new_token.k_ln_bias})
      if (w) prefetchL2(w + c);
  }
  pdlLaunchDependents();  // the next GEMM may start streaming its weights
  pdlWait();              // the projection (q or the new token) is complete and visible
  T* o = static_cast<T*>(p.o) + (int64_t(b) * p.n_heads + h) * kHeadDim;
  if (len <= 0) {  // no keys: output 0
    if (tid < kHeadDim) o[tid] = T(0.f);
    return;
  }
  if constexpr (kNewToken) {
    new_token_columns<T, kHeadDim>(p, b, h, col, scale_log2, q, k_new, v_new);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      if (first_start + i * RPP + group == len - 1) ka[i] = k_new, va[i] = v_new;
    }
  } else {
    unpack8<T>(*reinterpret_cast<const uint4*>(static_cast<const T*>(p.q) + (int64_t(b) * p.n_heads + h) * kHeadDim + col), q);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[i] *= scale_log2;
  }

  // Several splits: each one's partial goes to the workspace for the merge below.
  const int64_t first = (int64_t(b) * p.n_heads + h) * n_splits;
  float* part = p.workspace + first * kHeadDim;
  float* ml = p.workspace + int64_t(p.batch) * p.n_heads * n_splits * kHeadDim + first * 2;
  __shared__ float s_acc[RPP][kHeadDim];
  __shared__ float s_m[RPP], s_l[RPP];
  int my_splits = 0;
  for (int split = blockIdx.x;; split += gridDim.x) {
    const int start = split * split_keys, end = min(len, start + split_keys);
    if (kNewToken && end == len && p.new_token.positions[b] >= 0 && group == 0) {
      const int64_t at = rows.offset(len - 1) + column;
      *reinterpret_cast<uint4*>(static_cast<T*>(const_cast<void*>(p.k_cache)) + at) = k_new;
      *reinterpret_cast<uint4*>(static_cast<T*>(const_cast<void*>(p.v_cache)) + at) = v_new;
    }
    m = -CUDART_INF_F, l = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.f;
    // Two register stages: the next tile's loads are in flight while this one is consumed.
    for (int t0 = start;; t0 += 2 * Tr::kTileKeys) {
      const int t1 = t0 + Tr::kTileKeys, t2 = t1 + Tr::kTileKeys;
      if (t1 < end) load(kb, vb, t1, end);
      consume(ka, va, t0, end);
      if (t1 >= end) break;
      if (t2 < end) load(ka, va, t2, end);
      consume(kb, vb, t1, end);
      if (t2 >= end) break;
    }
    // The next split's first tile goes out before this one's merge (ka is free at either exit of the loop above).
    const int next = split + int(gridDim.x);
    if (kWalkSplits && next < n_active) load(ka, va, next * split_keys, min(len, (next + 1) * split_keys));

    // Merge the row groups of this CTA (each has its own max).
#pragma unroll
    for (int e = 0; e < 8; ++e) s_acc[group][col + e] = acc[e];
    if (col == 0) {
      s_m[group] = m;
      s_l[group] = l;
    }
    __syncthreads();
    float out = 0.f, mx = -CUDART_INF_F, sum = 0.f;
    if (tid < kHeadDim) {
#pragma unroll
      for (int g = 0; g < RPP; ++g) mx = fmaxf(mx, s_m[g]);  // finite: the split has at least one key
#pragma unroll
      for (int g = 0; g < RPP; ++g) {
        const float w = fast_exp2(s_m[g] - mx);
        out = fmaf(w, s_acc[g][tid], out);
        sum = fmaf(w, s_l[g], sum);
      }
    }
    if (n_active == 1) {
      if (tid < kHeadDim) o[tid] = T(out / sum);
      return;
    }
    if (tid < kHeadDim) {
      part[int64_t(split) * kHeadDim + tid] = out;
      if (tid == 0) ml[split * 2] = mx, ml[split * 2 + 1] = sum;
    }
    ++my_splits;
    if (!kWalkSplits || split + int(gridDim.x) >= n_active) break;
    __syncthreads();  // s_acc, s_m and s_l are read before the next split writes them
  }

  // A CTA with every split merges at once; otherwise the last CTA of the pair to finish does.
  __shared__ bool s_last;
  if (my_splits < n_active) __threadfence();  // this CTA's partials are visible before its ticket is
  __syncthreads();                             // and written before this CTA's threads read them
  if (my_splits < n_active) {
    if (tid == 0) {
      unsigned* ticket = p.split_counters + int64_t(b) * p.n_heads + h;
      s_last = atomicAdd(ticket, unsigned(my_splits)) + unsigned(my_splits) == unsigned(n_active);
      if (s_last) *ticket = 0;  // every split of this launch has been counted: ready for the next one
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
  }
  // The merge, with its loads in parallel rather than one L2 round trip per split: thread s fetches split s's
  // (max, sum), every thread weighs them, then sums its column over the splits in split order (several loads in
  // flight). Sums stay in split order, so the result does not depend on which split came last.
  __shared__ float s_split_m[kMaxSplits], s_split_l[kMaxSplits];
  static_assert(kMaxSplits <= Tr::kThreads, "one thread per split fetches its (max, sum)");
  if (tid < n_active) s_split_m[tid] = __ldcg(ml + tid * 2), s_split_l[tid] = __ldcg(ml + tid * 2 + 1);
  __syncthreads();
  if (tid >= kHeadDim) return;
  float top = -CUDART_INF_F;
  for (int s = 0; s < n_active; ++s) top = fmaxf(top, s_split_m[s]);
  float total = 0.f, merged = 0.f;
#pragma unroll 8
  for (int s = 0; s < n_active; ++s) {
    const float w = fast_exp2(s_split_m[s] - top);
    total = fmaf(w, s_split_l[s], total);
    merged = fmaf(w, __ldcg(part + int64_t(s) * kHeadDim + tid), merged);
  }
  o[tid] = T(merged / total);
}

// CTAs along each (batch, head) pair's splits: every split its own CTA while the grid stays within one wave
// (kDecodeCtasPerSm per SM), fewer (each walking several splits) when the pairs alone fill the GPU.
inline int decode_split_ctas(int64_t pairs, int n_splits, int sms) {
  return int(std::max<int64_t>(1, std::min<int64_t>(n_splits, int64_t(kDecodeCtasPerSm) * sms / pairs)));
}

template <typename T, int kHeadDim>
cudaError_t run_decode(const DecodeAttentionParams& p, cudaStream_t stream) {
  const int split_keys = decode_split_keys(p.max_seq_len), n_splits = decode_max_splits(p.max_seq_len);
  int sms = 0;
  if (const cudaError_t err = multiprocessorCount(&sms); err != cudaSuccess) return err;
  const int split_ctas = decode_split_ctas(int64_t(p.batch) * p.n_heads, n_splits, sms);
  return BOOL_SWITCH(p.alibi_slopes != nullptr, kAlibi, [&] {
    return BOOL_SWITCH(p.new_token.qkv != nullptr, kNewToken, [&] {
      return BOOL_SWITCH(split_ctas < n_splits, kWalkSplits, [&] {
        return launchPdl(p.pdl, decode_kernel<T, kHeadDim, kAlibi, kNewToken, kWalkSplits>,
                         dim3(split_ctas, p.n_heads, p.batch), dim3(DecodeTraits<kHeadDim>::kThreads), 0, stream, p,
                         n_splits, split_keys);
      });
    });
  });
}

}  // namespace attn

size_t decode_attention_workspace_floats(int batch, int n_heads, int head_dim, int max_seq_len) {
  if (batch <= 0 || n_heads <= 0 || max_seq_len <= 0 || (head_dim != 64 && head_dim != 128)) return 0;
  const size_t splits = size_t(attn::decode_max_splits(max_seq_len));
  return size_t(batch) * n_heads * splits * (head_dim + 2);
}

cudaError_t decode_attention(const DecodeAttentionParams& p, cudaStream_t stream) {
  if (p.dtype != AttnDType::F16 && p.dtype != AttnDType::BF16) return cudaErrorInvalidValue;
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorInvalidValue;
  if (p.batch < 0 || p.n_heads < 0) return cudaErrorInvalidValue;
  if (p.batch == 0 || p.n_heads == 0) return cudaSuccess;
  if (p.n_heads > 65535 || p.batch > 65535 || p.max_seq_len <= 0 || p.max_seq_len > (1 << 24))
    return cudaErrorInvalidValue;
  const DecodeNewToken& nt = p.new_token;
  if ((!p.q && !nt.qkv) || !p.o || !p.k_cache || !p.v_cache || !p.seq_len || !p.workspace || !p.split_counters)
    return cudaErrorInvalidValue;
  if (nt.qkv && (!nt.positions || (nt.q_ln_weight != nullptr) != (nt.k_ln_weight != nullptr)))
    return cudaErrorInvalidValue;
  // 16-byte vectors of q (or the new token's row), o and the cache.
  if (!aligned16(nt.qkv ? nt.qkv : p.q) || !aligned16(p.o) || !aligned16(p.k_cache) || !aligned16(p.v_cache))
    return cudaErrorInvalidValue;
  if (p.kv.batch_stride % 8 != 0 || p.kv.block_stride % 8 != 0 || p.kv.row_stride % 8 != 0 || p.head_stride % 8 != 0)
    return cudaErrorInvalidValue;
  return DTYPE_SWITCH(p.dtype, T, [&] {
    return HEADDIM_SWITCH(p.head_dim, kHeadDim, [&] { return attn::run_decode<T, kHeadDim>(p, stream); });
  });
}

}  // namespace flashmpt
