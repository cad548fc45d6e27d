// Decode GEMM for M ≤ 64 rows: weight-bandwidth bound, so every weight byte is read once, 16 bytes per load,
// many loads in flight, and the tensor cores do the arithmetic with the roles swapped: W is the mma's A
// operand (16 output features per block) and the activations are its B operand (8 rows per n-tile).
//
// k order inside an mma does not matter as long as A and B agree. Lane (g = lane/4, q = lane%4) loads 16
// contiguous bytes at k = k0 + 32j + 8q from weight rows g and g+8 and from activation row g; elements 0-1 and
// 2-3 of those loads serve as the fragments' k slots {2q, 2q+1} and {2q+8, 2q+9} of one m16n8k16, elements
// 4-7 of a second. Fragments then come straight from registers: no shared memory, no shuffles, and each
// load instruction covers whole 32-byte sectors (4 lanes × 16 bytes of a row).
//
// The 8 warps of a block split K and meet in shared memory; the block then applies the epilogue, so the result
// is deterministic. Long K with an fp32 residual output (mlp_down) is also split over several blocks, which add
// their sums atomically: one warp step per warp keeps many loads in flight instead of a chain of round trips.
//
// With a folded LayerNorm (params.norm_weight), warp m normalizes fp32 activation row m into shared memory after
// the wait (the row is 8 KB at d_model 2048, an L2 hit), and the activation fragments come from there: the
// separate LayerNorm kernel and its launch boundary disappear from the decode step.
//
// The first step's weights are loaded before pdlWait(): no kernel writes them, so under programmatic dependent
// launch they stream in while the previous kernel (LayerNorm, attention) finishes.
#include <cuda_runtime.h>

#include "kernels/common/block_reduce.cuh"
#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/gemm/epilogue.cuh"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_ptx.cuh"

namespace flashmpt {
namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerBlock = 16;  // output features
constexpr int kMaxSplits = 16;

static_assert(kSkinnyNormMaxRows <= kWarps, "one warp per normalized row");

// Floats per normalized row in shared memory: 16 bytes of padding put the 8 lanes of a quarter warp (two rows,
// 4 × 32 bytes each) on distinct banks.
__host__ __device__ constexpr int normRowStride(int k) { return k + 4; }

// Warp-wide LayerNorm of fp32 activation row m of p.a into `row` (shared memory), two-pass fp32 statistics.
__device__ __forceinline__ void normalizeRow(const GemmParams& p, int m, float* row) {
  const int lane = threadIdx.x & 31;
  const float* x = static_cast<const float*>(p.a) + int64_t(m) * p.lda;
  float sum = 0.f;
#pragma unroll 4
  for (int k = 4 * lane; k < p.K; k += 128) {
    const float4 v = *reinterpret_cast<const float4*>(x + k);
    *reinterpret_cast<float4*>(row + k) = v;
    sum += (v.x + v.y) + (v.z + v.w);
  }
  const float mean = warpSum(sum) / p.K;
  float sq = 0.f;
  for (int k = 4 * lane; k < p.K; k += 128) {
    const float4 v = *reinterpret_cast<const float4*>(row + k);
    sq += (v.x - mean) * (v.x - mean) + (v.y - mean) * (v.y - mean) + (v.z - mean) * (v.z - mean) +
          (v.w - mean) * (v.w - mean);
  }
  const float rstd = rsqrtf(warpSum(sq) / p.K + p.norm_eps);
  for (int k = 4 * lane; k < p.K; k += 128) {
    float4 v = *reinterpret_cast<const float4*>(row + k);
    const float4 w = *reinterpret_cast<const float4*>(p.norm_weight + k);
    const float4 b = p.norm_bias ? *reinterpret_cast<const float4*>(p.norm_bias + k) : make_float4(0.f, 0.f, 0.f, 0.f);
    v.x = (v.x - mean) * rstd * w.x + b.x;
    v.y = (v.y - mean) * rstd * w.y + b.y;
    v.z = (v.z - mean) * rstd * w.z + b.z;
    v.w = (v.w - mean) * rstd * w.w + b.w;
    *reinterpret_cast<float4*>(row + k) = v;
  }
}

// 8 normalized floats as one 16-byte activation fragment of T (the layout a dtype row would have in memory).
template <class T>
__device__ __forceinline__ uint4 packFragment(const float* f) {
  const float4 lo = *reinterpret_cast<const float4*>(f), hi = *reinterpret_cast<const float4*>(f + 4);
  return make_uint4(packPair<T>(lo.x, lo.y), packPair<T>(lo.z, lo.w), packPair<T>(hi.x, hi.y), packPair<T>(hi.z, hi.w));
}

// NT n-tiles of 8 activation rows; J 16-byte loads per lane per row and step (a warp step covers 32·J of k).
// A persistent grid (one resident wave) walks the tiles t = blockIdx.x, + gridDim.x, ...: tile t computes features
// [16x, 16x + 16) over k in [y·slice_k, (y + 1)·slice_k) for x = t % tiles_n, y = t / tiles_n. The next tile's
// first weights are loaded before this tile's reduction, so a block keeps its loads in flight from tile to tile,
// and per-block setup (the folded LayerNorm) happens once. kSplit: y > 0 exists and the output is an fp32
// accumulation; kNorm: LayerNorm folded in (NT == 1, no split).
template <class T, int NT, int J, GemmOut OUT, bool kSplit, bool kNorm>
__global__ void __launch_bounds__(kWarps * 32, 2)  // two blocks per SM: at most 128 registers
    gemmSkinnyKernel(const GemmParams p, int tiles_n, int tiles, int slice_k) {
  static_assert(!kNorm || (NT == 1 && !kSplit), "a folded LayerNorm needs whole rows in one activation tile");
  constexpr int kStepK = 32 * J, kBlockStepK = kWarps * kStepK;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const T* A = static_cast<const T*>(p.a);
  const T* W = static_cast<const T*>(p.w);
  const uint4 zero = make_uint4(0, 0, 0, 0);

  int n0 = 0, kBegin = 0, kEnd = 0;
  bool okLo = false, okHi = false;
  const T *wLo = W, *wHi = W;
  auto setTile = [&](int t) {
    n0 = t % tiles_n * kRowsPerBlock;
    kBegin = t / tiles_n * slice_k;
    kEnd = min(p.K, kBegin + slice_k);
    okLo = n0 + g < p.N;
    okHi = n0 + g + 8 < p.N;
    wLo = W + int64_t(okLo ? n0 + g : 0) * p.ldw;
    wHi = W + int64_t(okHi ? n0 + g + 8 : 0) * p.ldw;
  };
  uint4 aLo[J], aHi[J];
  auto loadWeights = [&](int k0) {
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int k = k0 + 32 * j + 8 * q;
      aLo[j] = okLo && k < kEnd ? loadStreaming16(wLo + k) : zero;
      aHi[j] = okHi && k < kEnd ? loadStreaming16(wHi + k) : zero;
    }
  };

  int tile = blockIdx.x;
  setTile(tile);
  int k0 = kBegin + warp * kStepK;
  loadWeights(k0);
  pdlWait();
  pdlLaunchDependents();
  extern __shared__ float4 normRows[];  // kNorm: [M][normRowStride(K)] floats
  const float* norm = reinterpret_cast<const float*>(normRows);
  if constexpr (kNorm) {
    if (warp < p.M) normalizeRow(p, warp, reinterpret_cast<float*>(normRows) + warp * normRowStride(p.K));
    __syncthreads();
  }
  __shared__ float partial[kWarps][NT * 8][kRowsPerBlock + 1];
  for (;;) {
    float acc[NT][4];
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[t][e] = 0.f;
    for (; k0 < kEnd; k0 += kBlockStepK) {
      uint4 b[NT][J];
#pragma unroll
      for (int j = 0; j < J; ++j) {
        const int k = k0 + 32 * j + 8 * q;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          const int m = t * 8 + g;
          if constexpr (kNorm) {
            b[t][j] = m < p.M && k < kEnd ? packFragment<T>(norm + m * normRowStride(p.K) + k) : zero;
          } else {
            b[t][j] = m < p.M && k < kEnd ? *reinterpret_cast<const uint4*>(A + int64_t(m) * p.lda + k) : zero;
          }
        }
      }
#pragma unroll
      for (int j = 0; j < J; ++j) {
        const uint32_t a0[4] = {aLo[j].x, aHi[j].x, aLo[j].y, aHi[j].y};
        const uint32_t a1[4] = {aLo[j].z, aHi[j].z, aLo[j].w, aHi[j].w};
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          mma16816<T>(acc[t], a0, b[t][j].x, b[t][j].y);
          mma16816<T>(acc[t], a1, b[t][j].z, b[t][j].w);
        }
      }
      if (k0 + kBlockStepK < kEnd) loadWeights(k0 + kBlockStepK);
    }

    // The next tile's first weights stream in while this one is reduced.
    const int tileN0 = n0;
    const bool firstSlice = kBegin == 0;
    const int next = tile + gridDim.x;
    if (next < tiles) {
      setTile(next);
      k0 = kBegin + warp * kStepK;
      loadWeights(k0);
    }

    // acc[t]: c0,c1 = (feature g, rows 8t+2q, 8t+2q+1), c2,c3 = (feature g+8, same rows).
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      partial[warp][t * 8 + 2 * q][g] = acc[t][0];
      partial[warp][t * 8 + 2 * q + 1][g] = acc[t][1];
      partial[warp][t * 8 + 2 * q][g + 8] = acc[t][2];
      partial[warp][t * 8 + 2 * q + 1][g + 8] = acc[t][3];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < NT * 8 * kRowsPerBlock; i += kWarps * 32) {
      const int m = i / kRowsPerBlock, r = i % kRowsPerBlock, n = tileN0 + r;
      if (m >= p.M || n >= p.N) continue;
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += partial[w][m][r];
      if constexpr (kSplit) {
        const float bias = firstSlice && p.bias ? p.bias[n] : 0.f;
        atomicAdd(static_cast<float*>(p.c) + int64_t(m) * p.ldc + n, p.alpha * sum + bias);
      } else {
        epilogueStore<T, OUT>(p, m, n, sum);
      }
    }
    if (next >= tiles) break;
    tile = next;
    __syncthreads();  // partial is rewritten by the next tile
  }
}

// Fewer loads per lane as the activation tiles grow, to keep registers (and occupancy) in check.
template <class T, int NT, GemmOut OUT, bool kNorm>
cudaError_t launchSkinny(const GemmParams& p, cudaStream_t stream) {
  constexpr int J = NT == 1 ? 8 : NT == 2 ? 4 : 2;
  constexpr int kBlockK = kWarps * 32 * J;  // k one block covers in one step of all its warps
  const int blocks = (p.N + kRowsPerBlock - 1) / kRowsPerBlock;
  // Only an fp32 accumulation can take partial sums from several blocks; a folded LayerNorm needs whole rows.
  int splits = OUT == GemmOut::AddFloat && !kNorm ? (p.K + kBlockK - 1) / kBlockK : 1;
  splits = splits < kMaxSplits ? splits : kMaxSplits;
  const int steps = (p.K + 32 * J - 1) / (32 * J);
  const int sliceK = (steps + splits - 1) / splits * 32 * J;
  const int tiles = blocks * splits;
  const size_t smem = kNorm ? size_t(p.M) * size_t(normRowStride(p.K)) * sizeof(float) : 0;
  auto launch = [&](auto kernel) {
    int device = 0, sms = 0, perSm = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err == cudaSuccess && smem > 48 * 1024) {
      err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    }
    if (err == cudaSuccess) err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kernel, kWarps * 32, smem);
    if (err != cudaSuccess) return err;
    const int wave = sms * perSm;  // the persistent grid: one resident wave, or fewer blocks than that
    return launchPdl(p.pdl, kernel, dim3(tiles < wave ? tiles : wave), dim3(kWarps * 32), smem, stream, p, blocks,
                     tiles, sliceK);
  };
  if constexpr (kNorm) {
    return launch(gemmSkinnyKernel<T, NT, J, OUT, false, true>);
  } else {
    return switchBool(splits > 1, [&](auto split) {
      return launch(gemmSkinnyKernel<T, NT, J, OUT, decltype(split)::value, false>);
    });
  }
}

}  // namespace

cudaError_t gemmSkinny(const GemmParams& p, cudaStream_t stream) {
  if (p.M > kSkinnyMaxRows) return cudaErrorInvalidValue;
  return switchHalf(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    return switchGemmOut(p.out, [&](auto o) {
      constexpr GemmOut OUT = decltype(o)::value;
      if (p.norm_weight) {
        return skinnyNormFits(p.M, p.K) ? launchSkinny<T, 1, OUT, true>(p, stream) : cudaErrorInvalidValue;
      }
      if (p.M <= 8) return launchSkinny<T, 1, OUT, false>(p, stream);
      if (p.M <= 16) return launchSkinny<T, 2, OUT, false>(p, stream);
      if (p.M <= 32) return launchSkinny<T, 4, OUT, false>(p, stream);
      return launchSkinny<T, 8, OUT, false>(p, stream);
    });
  });
}

}  // namespace flashmpt
