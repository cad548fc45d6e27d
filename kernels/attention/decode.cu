// Decode attention (flash-decoding): one query per (batch, head) against its cached keys. Memory bound: every
// K and V byte is read once, so the design is about bytes in flight, not arithmetic.
//   split kernel: grid (split, head, batch), one wave of CTAs. A CTA walks its slice of the keys in tiles;
//     each thread owns one 16-byte column of head_dim and loads that column of 4 key rows (K and V) per tile,
//     two tiles in flight (register double buffering). Scores are reduced over the row's threads with shuffles; each group of threads sharing a row
//     keeps its own running (max, sum, acc) in fp32, and the groups are merged once at the end. The CTA writes
//     its unnormalized output and (max, sum) to the workspace.
//   merge kernel: grid (head, batch), combines the splits with their log-sum-exp weights.
// A sequence's keys are cut into splits of a fixed size that depends on max_seq_len alone (decode_split_keys), so
// its partition, and with it every sum, is the same whatever batch it runs in (batch invariance) and a captured
// graph stays valid; splits past a sequence's length exit at once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "alibi.cuh"
#include "attention_params.h"
#include "mma.cuh"
#include "softmax.cuh"
#include "static_switch.h"

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
constexpr int kMergeThreads = 256;
constexpr int kSplitKeys = 128;  // keys per split at least: a multiple of every tile's keys
constexpr int kMaxSplits = 64;   // bounds the workspace: longer contexts get longer splits

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

template <typename T, int kHeadDim, bool kAlibi>
__global__ void __launch_bounds__(DecodeTraits<kHeadDim>::kThreads)
    decode_split_kernel(const DecodeAttentionParams p, int n_splits, int split_keys) {
  using Tr = DecodeTraits<kHeadDim>;
  constexpr int TPR = Tr::kThreadsPerRow, RPP = Tr::kRowsPerPass, P = Tr::kPasses;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Let the merge kernel launch now (it waits for this grid before reading): hides its launch latency.
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int len = min(p.seq_len[b], p.max_seq_len);
  if (len <= 0) return;
  const int start = split * split_keys, end = min(len, start + split_keys);
  if (start >= end) return;  // the merge reads only splits below cdiv(len, split_keys)

  const int tid = threadIdx.x, group = tid / TPR, col = (tid % TPR) * 8;
  const KvRows rows = p.kv.sequence(b);
  const int64_t column = int64_t(h) * p.head_stride + col;
  const T* kp = static_cast<const T*>(p.k_cache) + column;
  const T* vp = static_cast<const T*>(p.v_cache) + column;

  float q[8];
  unpack8<T>(*reinterpret_cast<const uint4*>(static_cast<const T*>(p.q) + (int64_t(b) * p.n_heads + h) * kHeadDim + col), q);
  const float scale_log2 = p.softmax_scale * kLog2e;
#pragma unroll
  for (int i = 0; i < 8; ++i) q[i] *= scale_log2;
  const float slope_log2 = kAlibi ? p.alibi_slopes[h] * kLog2e : 0.f;
  const int qpos = len - 1;

  float m = -CUDART_INF_F, l = 0.f, acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = 0.f;

  // Rows t0 + i*RPP + group of a tile: all loads issued before any use.
  auto load = [&](uint4 (&kv)[P], uint4 (&vv)[P], int t0) {
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int key = t0 + i * RPP + group;
      if (key < end) {
        const int64_t at = rows.offset(key);
        kv[i] = load_nc(kp + at);
        vv[i] = load_nc(vp + at);
      } else {
        kv[i] = vv[i] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  // Online softmax of one tile into this row group's (m, l, acc).
  auto consume = [&](const uint4 (&kv)[P], const uint4 (&vv)[P], int t0) {
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

  // Two register stages: the next tile's loads are in flight while this one is consumed.
  uint4 ka[P], va[P], kb[P], vb[P];
  load(ka, va, start);
  for (int t0 = start;; t0 += 2 * Tr::kTileKeys) {
    const int t1 = t0 + Tr::kTileKeys, t2 = t1 + Tr::kTileKeys;
    if (t1 < end) load(kb, vb, t1);
    consume(ka, va, t0);
    if (t1 >= end) break;
    if (t2 < end) load(ka, va, t2);
    consume(kb, vb, t1);
    if (t2 >= end) break;
  }

  // Merge the row groups of this CTA (each has its own max) and write the split's partial result.
  __shared__ float s_acc[RPP][kHeadDim];
  __shared__ float s_m[RPP], s_l[RPP];
#pragma unroll
  for (int e = 0; e < 8; ++e) s_acc[group][col + e] = acc[e];
  if (col == 0) {
    s_m[group] = m;
    s_l[group] = l;
  }
  __syncthreads();
  if (tid < kHeadDim) {
    float mx = -CUDART_INF_F;
#pragma unroll
    for (int g = 0; g < RPP; ++g) mx = fmaxf(mx, s_m[g]);  // finite: the split has at least one key
    float o = 0.f, sum = 0.f;
#pragma unroll
    for (int g = 0; g < RPP; ++g) {
      const float w = fast_exp2(s_m[g] - mx);
      o = fmaf(w, s_acc[g][tid], o);
      sum = fmaf(w, s_l[g], sum);
    }
    const int64_t idx = (int64_t(b) * p.n_heads + h) * n_splits + split;
    p.workspace[idx * kHeadDim + tid] = o;
    if (tid == 0) {
      float* ml = p.workspace + int64_t(p.batch) * p.n_heads * n_splits * kHeadDim;
      ml[idx * 2] = mx;
      ml[idx * 2 + 1] = sum;
    }
  }
}

// One CTA per (head, batch): LSE weights of the splits, then the weighted sum of their outputs. Threads split
// the work as (4-float column quad) x (split subset) so every load is a 16-byte vector and several are in
// flight per thread.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kMergeThreads) decode_merge_kernel(const DecodeAttentionParams p, int n_splits,
                                                                    int split_keys) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");  // the split kernel's results are complete and visible
#endif
  constexpr int kQuads = kHeadDim / 4, kLanes = kMergeThreads / kQuads;  // kLanes split subsets
  extern __shared__ float s_w[];  // [n_splits] merge weights
  __shared__ float s_red[kMergeThreads / 32];
  __shared__ float4 s_acc[kLanes][kQuads];
  const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
  T* o = static_cast<T*>(p.o) + (int64_t(b) * p.n_heads + h) * kHeadDim;
  const int len = min(p.seq_len[b], p.max_seq_len);
  if (len <= 0) {  // no keys: output 0
    if (tid < kHeadDim) o[tid] = T(0.f);
    return;
  }
  const int n_active = cdiv(len, split_keys);
  const int64_t first = (int64_t(b) * p.n_heads + h) * n_splits;
  const float* part = p.workspace + first * kHeadDim;
  const float* ml = p.workspace + int64_t(p.batch) * p.n_heads * n_splits * kHeadDim + first * 2;

  auto block_reduce = [&](float x, bool is_max) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float y = __shfl_xor_sync(0xffffffffu, x, off);
      x = is_max ? fmaxf(x, y) : x + y;
    }
    if (tid % 32 == 0) s_red[tid / 32] = x;
    __syncthreads();
    x = s_red[0];
#pragma unroll
    for (int w = 1; w < kMergeThreads / 32; ++w) x = is_max ? fmaxf(x, s_red[w]) : x + s_red[w];
    __syncthreads();  // s_red is reused by the next reduction
    return x;
  };

  float mx = -CUDART_INF_F;
  for (int s = tid; s < n_active; s += kMergeThreads) mx = fmaxf(mx, ml[s * 2]);
  mx = block_reduce(mx, true);
  float sum = 0.f;
  for (int s = tid; s < n_active; s += kMergeThreads) {
    const float w = fast_exp2(ml[s * 2] - mx);
    s_w[s] = w;
    sum = fmaf(w, ml[s * 2 + 1], sum);
  }
  sum = block_reduce(sum, false);  // its barrier also publishes s_w

  const int quad = tid % kQuads, lane = tid / kQuads;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
  for (int s = lane; s < n_active; s += kLanes) {
    const float w = s_w[s];
    const float4 x = *reinterpret_cast<const float4*>(part + int64_t(s) * kHeadDim + quad * 4);
    acc.x = fmaf(w, x.x, acc.x), acc.y = fmaf(w, x.y, acc.y), acc.z = fmaf(w, x.z, acc.z), acc.w = fmaf(w, x.w, acc.w);
  }
  s_acc[lane][quad] = acc;
  __syncthreads();
  if (tid < kHeadDim) {
    float total = 0.f;
#pragma unroll
    for (int g = 0; g < kLanes; ++g) total += reinterpret_cast<const float*>(s_acc[g])[tid];
    o[tid] = T(total / sum);
  }
}

template <typename T, int kHeadDim>
cudaError_t run_decode(const DecodeAttentionParams& p, bool pdl, cudaStream_t stream) {
  const int split_keys = decode_split_keys(p.max_seq_len), n_splits = decode_max_splits(p.max_seq_len);
  return BOOL_SWITCH(p.alibi_slopes != nullptr, kAlibi, [&] {
    constexpr int kThreads = DecodeTraits<kHeadDim>::kThreads;
    decode_split_kernel<T, kHeadDim, kAlibi><<<dim3(n_splits, p.n_heads, p.batch), kThreads, 0, stream>>>(
        p, n_splits, split_keys);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;

    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(p.n_heads, p.batch);
    cfg.blockDim = dim3(kMergeThreads);
    cfg.dynamicSmemBytes = size_t(n_splits) * sizeof(float);
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    err = cudaLaunchKernelEx(&cfg, decode_merge_kernel<T, kHeadDim>, p, n_splits, split_keys);
    if (err != cudaSuccess) return err;
    return cudaGetLastError();
  });
}

}  // namespace attn

size_t decode_attention_workspace_floats(int batch, int n_heads, int head_dim, int max_seq_len) {
  if (batch <= 0 || n_heads <= 0 || max_seq_len <= 0 || (head_dim != 64 && head_dim != 128)) return 0;
  const size_t splits = size_t(attn::decode_max_splits(max_seq_len));
  return size_t(batch) * n_heads * splits * (head_dim + 2);
}

cudaError_t decode_attention(const DecodeAttentionParams& p, cudaStream_t stream) {
  auto aligned16 = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; };
  if (p.dtype != AttnDType::F16 && p.dtype != AttnDType::BF16) return cudaErrorInvalidValue;
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorInvalidValue;
  if (p.batch < 0 || p.n_heads < 0) return cudaErrorInvalidValue;
  if (p.batch == 0 || p.n_heads == 0) return cudaSuccess;
  if (p.n_heads > 65535 || p.batch > 65535 || p.max_seq_len <= 0 || p.max_seq_len > (1 << 24))
    return cudaErrorInvalidValue;
  if (!p.q || !p.o || !p.k_cache || !p.v_cache || !p.seq_len || !p.workspace)
    return cudaErrorInvalidValue;
  // 16-byte vectors of q, o and the cache; float4 reads of the workspace.
  if (!aligned16(p.q) || !aligned16(p.o) || !aligned16(p.k_cache) || !aligned16(p.v_cache) ||
      !aligned16(p.workspace))
    return cudaErrorInvalidValue;
  if (p.kv.batch_stride % 8 != 0 || p.kv.block_stride % 8 != 0 || p.kv.row_stride % 8 != 0 || p.head_stride % 8 != 0)
    return cudaErrorInvalidValue;

  int dev = 0, major = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (err != cudaSuccess) return err;
  const bool pdl = major >= 9;  // programmatic dependent launch: sm_90+
  return DTYPE_SWITCH(p.dtype, T, [&] {
    return HEADDIM_SWITCH(p.head_dim, kHeadDim, [&] { return attn::run_decode<T, kHeadDim>(p, pdl, stream); });
  });
}

}  // namespace flashmpt
