// Decode GEMM for M ≤ 64 rows: weight-bandwidth bound, so every weight byte is read once, 16 bytes per load,
// many loads in flight, and the tensor cores do the arithmetic with the roles swapped: W is the mma's A
// operand (16 output features per block) and the activations are its B operand (8 rows per n-tile).
//
// k order inside an mma does not matter as long as A and B agree. Lane (g = lane/4, q = lane%4) loads 16
// contiguous bytes at k = k0 + 32j + 8q from weight rows g and g+8 and from activation row g; elements 0-1 and
// 2-3 of those loads serve as the fragments' k slots {2q, 2q+1} and {2q+8, 2q+9} of one m16n8k16, elements
// 4-7 of a second. Fragments then come straight from registers: no shared memory, no shuffles, and each
// load instruction covers whole 32-byte sectors (4 lanes × 16 bytes of a row). From 17 rows on, the projections
// pass the same 16 bytes per lane through a slot of shared memory of the lane's own (warpProductsStaged), which
// frees the registers that held loads in flight.
//
// The 8 warps of a block split K and meet in shared memory; the block then applies the epilogue. Long K with an
// fp32 residual output (mlp_down) is also split over several blocks (one warp step per warp keeps many loads in
// flight instead of a chain of round trips), reduced in a fixed order by the last block (epilogue.cuh).
//
// Batch invariance: a row's sums must not depend on how many rows run with it. Every tile count uses the same
// k partition (J = 8 loads of 16 bytes per lane per warp step) and the same split count, and a tile's mma
// sequence runs over k in the same order; the activation fragments of larger batches are loaded one j at a
// time so their registers stay bounded. Which feature tiles share a block (F per warp, below) and the path the
// operands take are free: from 17 rows on, a warp computes two tiles from each activation fragment it loads,
// halving the activation traffic through L2, and the projections stage their operands (the decode weight stream
// at 32 / 64 rows: 2.09 / 2.50 → 1.62 / 2.24 → 1.55 / 1.99 ms on an H100).
//
// The first step's weights are loaded before pdlWait(): no kernel writes them, so under programmatic dependent
// launch they stream in while the previous kernel (LayerNorm, attention) finishes. The kernel lets its dependents
// launch before its own wait (kernels/common/pdl.cuh), so the weight stream runs on across kernel boundaries.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/common/dispatch.h"
#include "kernels/common/pdl.cuh"
#include "kernels/gemm/epilogue.cuh"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_ptx.cuh"

namespace flashmpt {
namespace {

constexpr int kWarps = 8;
constexpr int kTileFeatures = 16;  // output features of one mma tile (the mma's M)
constexpr int kMaxSplits = 16;

// NT n-tiles of 8 activation rows; kJ 16-byte loads per lane per weight row and step (a warp step covers 32·kJ of
// k). The K axis of a block's slice [y·slice_k, (y + 1)·slice_k) is dealt to kWarps partitions: partition w takes
// the warp steps at w·kStepK, (w + kWarps)·kStepK, … of it. An output is the sum of its partitions' sums, added in
// partition order, whichever kernel below computes them: that order is what every batch size shares. kSplit: y > 0
// exists and the output is an fp32 accumulation, reduced through the split workspace.
constexpr int kJ = 8;
constexpr int kStepK = 32 * kJ;
constexpr int kWarpStride = kWarps * kStepK;  // k between one partition's consecutive steps

// Lane (g, q)'s weight rows of F feature tiles from n0 — rows g and g + 8 of each — and whether they exist (past N
// the pointer is row 0, never read).
template <class T, int F>
struct LaneWeightRows {
  bool okLo[F], okHi[F];
  const T *lo[F], *hi[F];
  __device__ __forceinline__ LaneWeightRows(const GemmParams& p, int n0, int g) {
    const T* W = static_cast<const T*>(p.w);
#pragma unroll
    for (int f = 0; f < F; ++f) {
      const int n = n0 + f * kTileFeatures + g;
      okLo[f] = n < p.N;
      okHi[f] = n + 8 < p.N;
      lo[f] = W + int64_t(okLo[f] ? n : 0) * p.ldw;
      hi[f] = W + int64_t(okHi[f] ? n + 8 : 0) * p.ldw;
    }
  }
};

template <int F, int NT>
__device__ __forceinline__ void zeroAccumulators(float (&acc)[F][NT][4]) {
#pragma unroll
  for (int f = 0; f < F; ++f)
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[f][t][e] = 0.f;
}

// One warp's products for feature tiles [n0 + 16f, n0 + 16f + 16), f < F, over the partition whose first step is
// at kFirst (steps kWarps·kStepK apart, below kEnd), into acc. Its first weights load before pdlWait().
template <class T, int NT, int F>
__device__ __forceinline__ void warpProducts(const GemmParams& p, int n0, int kFirst, int kEnd, float (&acc)[F][NT][4]) {
  // Weight loads in flight per feature tile: one tile holds a whole warp step and reloads it after the step; two
  // tiles hold two j each, slot j % kDepth refilled with the element kDepth ahead as soon as its mmas used it (the
  // registers of acc and activations leave no room for more: 2, 3 and 4 measured, 2 fastest, bench/NOTES-decode.md O).
  constexpr int kDepth = F == 1 ? kJ : 2;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2, q = lane & 3;
  const T* A = static_cast<const T*>(p.a);
  const uint4 zero = make_uint4(0, 0, 0, 0);
  const LaneWeightRows<T, F> rows(p, n0, g);

  uint4 aLo[F][kDepth], aHi[F][kDepth];
  auto loadWeights = [&](int slot, int k) {
#pragma unroll
    for (int f = 0; f < F; ++f) {
      aLo[f][slot] = rows.okLo[f] && k < kEnd ? loadStreaming16(rows.lo[f] + k) : zero;
      aHi[f][slot] = rows.okHi[f] && k < kEnd ? loadStreaming16(rows.hi[f] + k) : zero;
    }
  };
  auto loadActivations = [&](uint4 (&b)[NT], int k) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int m = t * 8 + g;
      b[t] = m < p.M && k < kEnd ? *reinterpret_cast<const uint4*>(A + int64_t(m) * p.lda + k) : zero;
    }
  };

  zeroAccumulators(acc);

  int k0 = kFirst;
#pragma unroll
  for (int j = 0; j < kDepth; ++j) loadWeights(j, k0 + 32 * j + 8 * q);
  pdlLaunchDependents();
  pdlWait();
  for (; k0 < kEnd; k0 += kWarpStride) {
    // Small batches load all their activation fragments up front (loads in flight); larger ones keep two j steps
    // in flight, the next one loading while the current one multiplies (unrolled: every index is a constant).
    constexpr int kBuffers = NT <= 2 ? kJ : 2;
    uint4 b[kBuffers][NT];
#pragma unroll
    for (int j = 0; j < (kBuffers == kJ ? kJ : 1); ++j) loadActivations(b[j], k0 + 32 * j + 8 * q);
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      if constexpr (kBuffers == 2) {
        if (j + 1 < kJ) loadActivations(b[(j + 1) % 2], k0 + 32 * (j + 1) + 8 * q);
      }
      const uint4(&bj)[NT] = b[j % kBuffers];
      const int slot = j % kDepth;
#pragma unroll
      for (int f = 0; f < F; ++f) {
        const uint32_t a0[4] = {aLo[f][slot].x, aHi[f][slot].x, aLo[f][slot].y, aHi[f][slot].y};
        const uint32_t a1[4] = {aLo[f][slot].z, aHi[f][slot].z, aLo[f][slot].w, aHi[f][slot].w};
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          mma16816<T>(acc[f][t], a0, bj[t].x, bj[t].y);
          mma16816<T>(acc[f][t], a1, bj[t].z, bj[t].w);
        }
      }
      if constexpr (kDepth < kJ) {
        const int ahead = j + kDepth;  // the element this slot holds next: later in this step or in the next one
        if (ahead < kJ) {
          loadWeights(slot, k0 + 32 * ahead + 8 * q);
        } else if (k0 + kWarpStride < kEnd) {
          loadWeights(slot, k0 + kWarpStride + 32 * (ahead - kJ) + 8 * q);
        }
      }
    }
    if constexpr (kDepth == kJ) {
      if (k0 + kWarpStride < kEnd) {
#pragma unroll
        for (int j = 0; j < kJ; ++j) loadWeights(j, k0 + kWarpStride + 32 * j + 8 * q);
      }
    }
  }
}

// The same products with the operands staged in shared memory by cp.async, for 17-64 rows. There the registers of
// the loop above (weights in flight, two j of activation fragments, F·NT·4 accumulators) allow one block per SM,
// whose 8 warps mostly wait on loads (ncu, session 5: no eligible warp in 80-90% of cycles). Staged, a warp holds
// only its accumulators and one mma's fragments, so two blocks fit and loads stay in flight without registers.
// Unit u is one j of the partition's steps, in order; each lane copies and reads back only its own 16-byte slots
// (no barrier). Only kStages units per warp are in flight, fewer than the loop above keeps: measured faster for the
// projections (Wqkv, mlp_up, the LM head: −20 to −28% at 64 rows) but not for the residual GEMMs, which keep the
// loop above: mlp_down (split over K) 40-100% slower in every variant tried; out_proj 8.6 → 7.2 µs at 64 rows with
// three stages but the whole 32-row chain 0.1 ms slower (bench/NOTES-decode.md Q).
template <int NT>
constexpr int kStages = NT >= 8 ? 2 : 3;  // units in flight per warp: two blocks' staging must fit one SM
template <int NT, int F>
constexpr int kUnitSlots = 2 * F + NT;  // per lane and unit: weight rows g and g + 8 of each tile, then n-tiles
template <int NT, int F>
constexpr size_t kStagedBytes = size_t(kWarps) * kStages<NT> * kUnitSlots<NT, F> * 32 * sizeof(uint4);

template <class T, int NT, int F>
__device__ __forceinline__ void warpProductsStaged(const GemmParams& p, int n0, int kFirst, int kEnd,
                                                   float (&acc)[F][NT][4], uint4* stages) {
  constexpr int S = kStages<NT>, kSlots = kUnitSlots<NT, F>;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2, q = lane & 3;
  const T* A = static_cast<const T*>(p.a);
  const LaneWeightRows<T, F> rows(p, n0, g);
  zeroAccumulators(acc);

  const int units = kFirst < kEnd ? (kEnd - kFirst + kWarpStride - 1) / kWarpStride * kJ : 0;
  auto kOf = [&](int u) { return kFirst + u / kJ * kWarpStride + 32 * (u % kJ) + 8 * q; };
  auto slots = [&](int u) { return stages + (u % S) * kSlots * 32 + lane; };  // slot i of unit u at [32 i]
  auto copyWeights = [&](int u) {
    const int k = kOf(u);
    uint4* slot = slots(u);
#pragma unroll
    for (int f = 0; f < F; ++f) {
      const bool lo = rows.okLo[f] && k < kEnd, hi = rows.okHi[f] && k < kEnd;
      cpAsync16(sharedAddress(slot + 64 * f), rows.lo[f] + (lo ? k : 0), lo);
      cpAsync16(sharedAddress(slot + 64 * f + 32), rows.hi[f] + (hi ? k : 0), hi);
    }
  };
  auto copyActivations = [&](int u) {
    const int k = kOf(u);
    uint4* slot = slots(u) + 64 * F;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int m = t * 8 + g;
      const bool ok = m < p.M && k < kEnd;
      cpAsync16(sharedAddress(slot + 32 * t), A + (ok ? int64_t(m) * p.lda + k : 0), ok);
    }
  };

  // Weights (no kernel writes them) go out before the programmatic wait, activations after it.
#pragma unroll
  for (int u = 0; u < S - 1; ++u) {
    if (u < units) copyWeights(u);
  }
  pdlLaunchDependents();
  pdlWait();
#pragma unroll
  for (int u = 0; u < S - 1; ++u) {
    if (u < units) copyActivations(u);
    cpAsyncCommit();
  }
  for (int u = 0; u < units; ++u) {
    if (u + S - 1 < units) {
      copyWeights(u + S - 1);
      copyActivations(u + S - 1);
    }
    cpAsyncCommit();
    cpAsyncWait<S - 1>();  // unit u has landed
    const uint4* slot = slots(u);
    uint32_t a0[F][4], a1[F][4];
#pragma unroll
    for (int f = 0; f < F; ++f) {
      const uint4 lo = slot[64 * f], hi = slot[64 * f + 32];
      a0[f][0] = lo.x, a0[f][1] = hi.x, a0[f][2] = lo.y, a0[f][3] = hi.y;
      a1[f][0] = lo.z, a1[f][1] = hi.z, a1[f][2] = lo.w, a1[f][3] = hi.w;
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const uint4 b = slot[64 * F + 32 * t];
#pragma unroll
      for (int f = 0; f < F; ++f) {
        mma16816<T>(acc[f][t], a0[f], b.x, b.y);
        mma16816<T>(acc[f][t], a1[f], b.z, b.w);
      }
    }
  }
  cpAsyncWait<0>();
}

// A partition's sums of one feature tile, [row][feature]: acc c0,c1 = (feature g, rows 8t+2q, 8t+2q+1), c2,c3 =
// (feature g+8, same rows).
template <int NT>
using TilePartial = float[NT * 8][kTileFeatures + 1];

template <int NT>
__device__ __forceinline__ void storeTilePartial(const float (&acc)[NT][4], TilePartial<NT>& partial) {
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    partial[t * 8 + 2 * q][g] = acc[t][0];
    partial[t * 8 + 2 * q + 1][g] = acc[t][1];
    partial[t * 8 + 2 * q][g + 8] = acc[t][2];
    partial[t * 8 + 2 * q + 1][g + 8] = acc[t][3];
  }
}

// Output (m, n) of split blockIdx.y from the sum of its partitions: through the epilogue, or to the split workspace.
template <class T, GemmOut OUT, bool kSplit>
__device__ __forceinline__ void storeOutput(const GemmParams& p, int m, int n, float sum) {
  if constexpr (kSplit) {
    storeSplitPartial(p, blockIdx.y, m, n, sum);
  } else {
    epilogueStore<T, OUT>(p, m, n, sum);
  }
}

// After every thread of the block stored its outputs' split partials: the split of output tile `tile` (features
// [n0, n0 + features)) that finishes last adds all splits up, in split order.
__device__ __forceinline__ void finishSplits(const GemmParams& p, int tile, int n0, int features) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = takeLastTicket(p, tile, gridDim.y);
  __syncthreads();
  if (!last) return;
  for (int i = threadIdx.x; i < p.M * features; i += blockDim.x) {
    const int m = i / features, n = n0 + i % features;
    if (n < p.N) addSplitPartials(p, gridDim.y, m, n);
  }
}

// Warp w of a block is partition w; block (x, y) computes features [16F·x, 16F·(x + 1)). kStaged: the operands go
// through shared memory (warpProductsStaged), else straight to registers (warpProducts). The warps' sums meet in
// shared memory (the staging buffer, once drained), one feature tile at a time. The launch bounds ask two blocks
// per SM of the staged kernel and nothing of the other (0: unspecified; 1 let ptxas take 164 registers at 9-16 rows,
// one block per SM, where it takes 128 unasked).
template <class T, int NT, int F, bool kStaged, GemmOut OUT, bool kSplit>
__global__ void __launch_bounds__(kWarps * 32, kStaged ? 2 : 0) gemmSkinnyKernel(const GemmParams p, int slice_k) {
  extern __shared__ uint4 smem[];
  const int warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * kTileFeatures * F;
  const int kBegin = blockIdx.y * slice_k, kEnd = min(p.K, kBegin + slice_k);
  float acc[F][NT][4];
  if constexpr (kStaged) {
    warpProductsStaged<T, NT, F>(p, n0, kBegin + warp * kStepK, kEnd, acc,
                                 smem + warp * kStages<NT> * kUnitSlots<NT, F> * 32);
    __syncthreads();  // every warp's staging drained: the buffer takes the partition sums
  } else {
    warpProducts<T, NT, F>(p, n0, kBegin + warp * kStepK, kEnd, acc);
  }
  TilePartial<NT>* partial = reinterpret_cast<TilePartial<NT>*>(smem);
#pragma unroll
  for (int f = 0; f < F; ++f) {
    if (f > 0) __syncthreads();
    storeTilePartial<NT>(acc[f], partial[warp]);
    __syncthreads();
    for (int i = threadIdx.x; i < NT * 8 * kTileFeatures; i += kWarps * 32) {
      const int m = i / kTileFeatures, r = i % kTileFeatures, n = n0 + f * kTileFeatures + r;
      if (m >= p.M || n >= p.N) continue;
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += partial[w][m][r];
      storeOutput<T, OUT, kSplit>(p, m, n, sum);
    }
  }
  if constexpr (kSplit) finishSplits(p, blockIdx.x, n0, kTileFeatures * F);
}

template <class T, int NT, GemmOut OUT>
cudaError_t launchSkinny(const GemmParams& p, cudaStream_t stream) {
  const int tiles = (p.N + kTileFeatures - 1) / kTileFeatures;
  // Only an fp32 accumulation can take partial sums from several blocks; the count depends on K alone (a workspace
  // of gemmSkinnySplitFloats holds kMaxSplits splits of every tile at 64 rows, so its capacity never binds).
  int splits = OUT == GemmOut::AddFloat ? (p.K + kWarpStride - 1) / kWarpStride : 1;
  splits = std::min({splits, kMaxSplits, splitCapacity(p, tiles)});
  const int steps = (p.K + kStepK - 1) / kStepK;
  const int sliceK = (steps + splits - 1) / splits * kStepK;
  return switchBool(splits > 1, [&](auto split) {
    constexpr bool kSplit = decltype(split)::value;
    if constexpr (NT >= 4) {
      // From 17 rows on, two feature tiles per warp read each activation fragment once for both, when the grid
      // still fills every SM; the projections stage their operands (warpProductsStaged).
      int sms = 0;
      if (const cudaError_t err = multiprocessorCount(&sms); err != cudaSuccess) return err;
      const int pairs = (tiles + 1) / 2;
      return switchBool(int64_t(pairs) * splits >= sms, [&](auto twoTiles) {
        constexpr int F = decltype(twoTiles)::value ? 2 : 1;
        constexpr bool kStaged = OUT != GemmOut::AddFloat;
        auto kernel = gemmSkinnyKernel<T, NT, F, kStaged, OUT, kSplit>;
        const size_t smem = kStaged ? std::max(kStagedBytes<NT, F>, kWarps * sizeof(TilePartial<NT>))
                                    : kWarps * sizeof(TilePartial<NT>);
        if (kStaged) {
          const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
          if (err != cudaSuccess) return err;
        }
        return launchPdl(p.pdl, kernel, dim3(F == 2 ? pairs : tiles, splits), dim3(kWarps * 32), smem, stream, p,
                         sliceK);
      });
    } else {
      return launchPdl(p.pdl, gemmSkinnyKernel<T, NT, 1, false, OUT, kSplit>, dim3(tiles, splits), dim3(kWarps * 32),
                       kWarps * sizeof(TilePartial<NT>), stream, p, sliceK);
    }
  });
}

}  // namespace

size_t gemmSkinnySplitFloats(int N) { return size_t(kMaxSplits) * kSkinnyMaxRows * size_t(N); }

cudaError_t gemmSkinny(const GemmParams& p, cudaStream_t stream) {
  if (p.M > kSkinnyMaxRows) return cudaErrorInvalidValue;
  return switchHalf(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    return switchGemmOut(p.out, [&](auto o) {
      constexpr GemmOut OUT = decltype(o)::value;
      if (p.M <= 8) return launchSkinny<T, 1, OUT>(p, stream);
      if (p.M <= 16) return launchSkinny<T, 2, OUT>(p, stream);
      if (p.M <= 32) return launchSkinny<T, 4, OUT>(p, stream);
      return launchSkinny<T, 8, OUT>(p, stream);
    });
  });
}

}  // namespace flashmpt
