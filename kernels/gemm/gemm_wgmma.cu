// Prefill (and, when asked, decode) GEMM on Hopper (sm_90a): TMA loads BM×64 tiles of A and BN×64 tiles of W into
// 128-byte-swizzled shared memory, a STAGES-deep ring of full/empty mbarriers hands them from one producer
// warpgroup to two consumer warpgroups, which run wgmma (m64nWNk16, operands straight from shared memory, fp32
// accumulators in registers) and apply the fused epilogue (kernels/gemm/epilogue.cuh) through shared memory.
//
// Warpgroup 0 is the producer: one thread issues the copies, the group gives its registers to the consumers
// (setmaxnreg) in the one-block-per-SM tile. Consumer warpgroup c owns rows (c / kWgN)·64 and columns
// (c % kWgN)·WN of the block tile: the 128×256 tile splits M between them, the 64×128 tile splits N.
// TMA zero-fills past M, N and K, so ragged edges need no code in the main loop.
//
// An AddFloat output (the residual GEMMs) whose grid leaves SMs idle (few rows) is split along K over blockIdx.z
// when the caller gives a split workspace; a second kernel adds the splits' partials in order (epilogue.cuh), so
// the output is reproducible bit for bit. How many splits depends on M, so a row's bits do too, except with FOLD
// (GemmParams::row_invariant): K then runs in fixed parts of kWgmmaPartK elements, each from zero, folded in
// order — by the block itself (a drain of its MMAs at each part's end), or, for grids that would leave most SMs
// idle, by the fixup kernel over blocks of one part each. As for the other outputs (K in one pass), a row's bits
// then depend neither on M nor on the row's place in its tile: prompts prefilled in one pass get their solo bits.
//
// Decode rows (gemmWgmmaDecode, M ≤ 64) run a 64×128 tile (8 stages deep where a tile has at most two parts, else the
// small tile's 4; 96 wide where that fills more SMs) with K in parts fixed by the shape, one block per part,
// the parts of an output tile one thread-block cluster: each block stages its part's sums in shared memory and the
// cluster adds them in part order through distributed shared memory (addClusterParts), so a row's bits do not
// depend on M and no workspace or second kernel is needed. These launches alone run under PDL.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "kernels/common/dispatch.h"
#include "kernels/common/pdl.cuh"
#include "kernels/gemm/epilogue.cuh"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/wgmma.cuh"

namespace flashmpt {
namespace {

constexpr int kBK = 64;  // 64 16-bit elements: one 128-byte swizzle row
// With row_invariant an AddFloat output's K runs in parts of this many elements, folded in order.
constexpr int kWgmmaPartK = 512;
constexpr int kThreads = 384;
constexpr int kMaxClusterParts = 8;  // the portable cluster size

// A block that walks output tiles (WgParts::Tiles) stores a warp's 16 rows of a tile kStoreBoxCols columns at a time
// through two boxes of its own (the pipeline stages already hold the next tile's loads): the epilogue writes one
// box in the compute dtype while TMA stores the other, and a tile's last boxes are stored during the next tile's
// MMAs.
constexpr int kStoreBoxCols = kBK;  // one 128-byte swizzle row of 16-bit outputs, as tileMap's boxes
constexpr int kStoreBoxBytes = 16 * kStoreBoxCols * 2;
constexpr int kTileStagingBytes = 8 * 2 * kStoreBoxBytes;  // 8 consumer warps, two boxes each

template <int BM, int BN, int STAGES, bool TILES>
constexpr int wgmmaSmemBytes() {
  // tiles, the walking block's store boxes, full/empty barriers, 1024-byte alignment
  return STAGES * (BM + BN) * kBK * 2 + (TILES ? kTileStagingBytes : 0) + 2 * STAGES * 8 + 1024;
}

// The summed parts of columns n and n + 1 of row m: an AddFloat output through addFoldedSum (the bits every way of
// adding parts shares), any other through the epilogue.
template <class T, GemmOut OUT>
__device__ __forceinline__ void storeSummedPair(const GemmParams& p, int m, int n, float s0, float s1) {
  if constexpr (OUT == GemmOut::AddFloat) {
    if (n < p.N) addFoldedSum(p, m, n, s0);
    if (n + 1 < p.N) addFoldedSum(p, m, n + 1, s1);
  } else {
    epilogueStorePair<T, OUT>(p, m, n, s0, s1);
  }
}

// Decode rows: the blocks of one output tile's cluster (its parts of K, cluster rank = blockIdx.z) each staged their
// part's fp32 sums in shared memory, kLd floats a row, consumer c's WN columns from row 64·c. Every block then adds
// a share of the tile's outputs over all parts in part order through distributed shared memory and applies the
// epilogue; the second barrier keeps each block's staging alive until every other block has read it. All threads of
// every block take part (the barriers count them).
template <class T, GemmOut OUT, int BN, int WN, int kLd>
__device__ __forceinline__ void addClusterParts(const GemmParams& p, const float* staging, int m0, int n0) {
  clusterSync();
  const int parts = gridDim.z, rank = blockIdx.z;
  constexpr int kPairs = BN / 2;
  const int rows = min(64, p.M - m0);
  for (int i = rank * kThreads + threadIdx.x; i < rows * kPairs; i += parts * kThreads) {
    const int row = i / kPairs, col = i % kPairs * 2;
    const uint32_t local = sharedAddress(staging + (col / WN * 64 + row) * kLd + col % WN);
    float2 v[kMaxClusterParts];
#pragma unroll
    for (int r = 0; r < kMaxClusterParts; ++r) {
      if (r < parts) v[r] = loadSharedCluster2(mapShared(local, r));
    }
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int r = 0; r < kMaxClusterParts; ++r) {
      if (r < parts) s0 += v[r].x, s1 += v[r].y;
    }
    storeSummedPair<T, OUT>(p, m0 + row, n0 + col, s0, s1);
  }
  clusterSync();
}

// A warp's L2 prefetches of the fp32 output tile kRows × kCols at (m0, n0), a 128-byte line each.
template <int kRows, int kCols>
__device__ __forceinline__ void prefetchTileL2(const GemmParams& p, int m0, int n0) {
  constexpr int kLineFloats = 32, lines = kCols / kLineFloats;
  const int lane = threadIdx.x % 32;
  const float* c = static_cast<const float*>(p.c);
  for (int i = lane; i < kRows * lines; i += 32) {
    const int m = m0 + i / lines, n = n0 + i % lines * kLineFloats;
    if (m < p.M && n < p.N) prefetchL2(c + int64_t(m) * p.ldc + n);
  }
}

// An in-place residual update (AddFloat, K in one block) of a warp's 16 staged rows × WN columns at (m0, n0): the
// reads of c for kBatch pairs go out together, then their sums are stored. Pair by pair, the compiler may not hoist
// a load of c above the previous pair's store to c, and each pair paid a DRAM round trip: ~33 µs of a 2048-row
// out_proj's 55 (H200, session 10). The same sums as storeSummedPair / epilogueStorePair.
template <bool FOLD>
__device__ __forceinline__ void addResidualPairs(const GemmParams& p, const float* staging, int ld, int wn, int lane,
                                                 int m0, int n0) {
  constexpr int kBatch = 8;
  float* c = static_cast<float*>(p.c);
  const int pairs = 16 * wn / 2;
  for (int i0 = lane; i0 < pairs; i0 += 32 * kBatch) {
    float2 old[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + 32 * b, row = i / (wn / 2), m = m0 + row, n = n0 + i % (wn / 2) * 2;
      old[b] = i < pairs && m < p.M && n + 1 < p.N ? *reinterpret_cast<const float2*>(c + int64_t(m) * p.ldc + n)
                                                    : make_float2(0.f, 0.f);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + 32 * b, row = i / (wn / 2), col = i % (wn / 2) * 2, m = m0 + row, n = n0 + col;
      if (i >= pairs || m >= p.M || n >= p.N) continue;
      const float2 v = *reinterpret_cast<const float2*>(staging + row * ld + col);
      auto increment = [&](int at, float sum) {
        return FOLD ? foldedIncrement(p, at, sum) : epilogueValue<GemmOut::AddFloat>(p, at, sum);
      };
      if (n + 1 < p.N) {
        *reinterpret_cast<float2*>(c + int64_t(m) * p.ldc + n) =
            make_float2(old[b].x + increment(n, v.x), old[b].y + increment(n + 1, v.y));
      } else {
        c[int64_t(m) * p.ldc + n] += increment(n, v.x);  // the last, odd column
      }
    }
  }
}

// A warp's accumulators (fragment layout: wgmma.cuh) written to its 16 staged rows of ld floats.
template <int N>
__device__ __forceinline__ void stageFragments(float* staging, int ld, const float (&acc)[N], int lane) {
#pragma unroll
  for (int j = 0; j < N / 4; ++j) {
    const int row = lane / 4, col = j * 8 + (lane % 4) * 2;
    *reinterpret_cast<float2*>(staging + row * ld + col) = make_float2(acc[4 * j], acc[4 * j + 1]);
    *reinterpret_cast<float2*>(staging + (row + 8) * ld + col) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
  }
}

// A Tiles block's epilogue for one tile: its warp's 16 rows × WN columns at (m0, n0), a box of kStoreBoxCols columns
// at a time. Each lane applies the epilogue to its accumulator pairs (epilogueValue and packPair: the bits of
// epilogueStorePair) and writes them into the box's rows of 128 bytes with the 128-byte swizzle the output's tensor
// map reads (16-byte unit u of row r at u ^ r % 8: a warp's writes of one column group hit 32 banks); one lane
// hands the box to TMA, which writes only the rows below M and the columns below N (the bias index is clamped for
// the columns past N, whose values it drops). A box's store is awaited only before its reuse, two boxes later.
template <class T, GemmOut OUT, int WN>
__device__ __forceinline__ void storeTileBoxes(const GemmParams& p, const CUtensorMap* mapC, const float (&acc)[WN / 2],
                                               unsigned char* boxes, int lane, int m0, int n0) {
  constexpr int kGroups = kStoreBoxCols / 8;  // accumulator column groups a box
  const int row = lane / 4, byte = lane % 4 * 4;
#pragma unroll
  for (int box = 0; box < WN / kStoreBoxCols; ++box) {
    unsigned char* staged = boxes + box % 2 * kStoreBoxBytes;
    if (lane == 0) bulkWaitRead<1>();
    __syncwarp();
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int j = box * kGroups + g, n = n0 + j * 8 + lane % 4 * 2, nLo = min(n, p.N - 1), nHi = min(n + 1, p.N - 1);
      const uint32_t upper =
          packPair<T>(epilogueValue<OUT>(p, nLo, acc[4 * j]), epilogueValue<OUT>(p, nHi, acc[4 * j + 1]));
      const uint32_t lower =
          packPair<T>(epilogueValue<OUT>(p, nLo, acc[4 * j + 2]), epilogueValue<OUT>(p, nHi, acc[4 * j + 3]));
      const int unit = (g ^ row) * 16 + byte;  // rows row and row + 8 share row % 8
      *reinterpret_cast<uint32_t*>(staged + row * 128 + unit) = upper;
      *reinterpret_cast<uint32_t*>(staged + (row + 8) * 128 + unit) = lower;
    }
    fenceProxyAsyncShared();
    __syncwarp();
    if (lane == 0) {
      tmaStore2d(mapC, staged, n0 + box * kStoreBoxCols, m0);
      bulkCommit();
    }
  }
}

// How a block's K range and the blocks of blockIdx.z meet. Whole: K in one pass (z > 1, AddFloat only: the fixup
// kernel adds the splits). Fold: K in fixed parts of kWgmmaPartK, folded in order (above). Cluster: the blocks of
// blockIdx.z, one cluster, each run one part and add them all in order (addClusterParts), any output (decode rows).
// Tiles: K in one pass, and a block (one an SM) walks the output tiles blockIdx.x, + gridDim.x, ...: its producer
// streams the next tile's stages while its consumers run the epilogue (storeTileBoxes), whose stores TMA finishes
// during the next tile's MMAs — a grid of one tile a block waits on each wave's first loads and stores.
enum class WgParts { Whole, Fold, Cluster, Tiles };

template <class T, int BM, int BN, int STAGES, int MIN_BLOCKS, GemmOut OUT, WgParts PARTS>
__global__ void __launch_bounds__(kThreads, MIN_BLOCKS)
    gemmWgmmaKernel(const __grid_constant__ CUtensorMap mapA, const __grid_constant__ CUtensorMap mapW,
                    const __grid_constant__ CUtensorMap mapC, const GemmParams p, int kTilesPerSplit) {
#ifdef FLASHMPT_HAS_WGMMA
  constexpr bool FOLD = PARTS == WgParts::Fold, CLUSTER = PARTS == WgParts::Cluster, TILES = PARTS == WgParts::Tiles;
  constexpr int kWgM = BM / 64, kWgN = 2 / kWgM, WN = BN / kWgN;  // consumer warpgroups' grid and their N
  constexpr int kTileA = BM * kBK, kTileW = BN * kBK;              // elements per stage
  constexpr uint32_t kStageBytes = (kTileA + kTileW) * 2;
  static_assert(!FOLD || OUT == GemmOut::AddFloat, "folded parts are for AddFloat outputs");
  constexpr int kPartTiles = kWgmmaPartK / kBK;
  static_assert(kWgM * kWgN == 2 && WN % 16 == 0, "tile shape");
  static_assert(!FOLD || WN <= 128, "a folding consumer holds two sets of accumulators");
  static_assert(kWgmmaPartK % kBK == 0, "parts of whole k-tiles");
  static_assert(!CLUSTER || BM == 64, "a decode cluster adds one 64-row tile");
  static_assert(!TILES || OUT == GemmOut::Half || OUT == GemmOut::HalfGelu, "walking blocks store through the epilogue");

  extern __shared__ unsigned char smemRaw[];
  // 128-byte swizzle atoms (8 rows × 128 bytes) must start on 1024-byte boundaries.
  T* smem = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(smemRaw) + 1023) & ~uintptr_t(1023));
  unsigned char* boxes = reinterpret_cast<unsigned char*>(smem + STAGES * (kTileA + kTileW));  // TILES: 1024-aligned
  uint64_t* full = reinterpret_cast<uint64_t*>(boxes + (TILES ? kTileStagingBytes : 0));
  uint64_t* empty = full + STAGES;
  auto tileA = [&](int s) { return smem + s * (kTileA + kTileW); };
  auto tileW = [&](int s) { return smem + s * (kTileA + kTileW) + kTileA; };

  const int wg = threadIdx.x / 128;
  // The output tiles of this block: one (blockIdx.y, blockIdx.x), or with TILES every gridDim.x-th of the grid's
  // tiles in row-major order (the order a grid of one tile a block starts them in).
  const int tilesN = (p.N + BN - 1) / BN;
  const int firstTile = TILES ? int(blockIdx.x) : 0, tileStep = TILES ? int(gridDim.x) : 1;
  const int tileCount = TILES ? tilesN * ((p.M + BM - 1) / BM) : 1;
  auto tileRow = [&](int t) { return TILES ? t / tilesN * BM : int(blockIdx.y) * BM; };
  auto tileCol = [&](int t) { return TILES ? t % tilesN * BN : int(blockIdx.x) * BN; };
  // This block's k-tiles: [kBegin, kBegin + kTiles), never empty (the launcher sizes gridDim.z so).
  const int kBegin = blockIdx.z * kTilesPerSplit;
  const int kTiles = min((p.K + kBK - 1) / kBK - kBegin, kTilesPerSplit);
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbarrierInit(&full[s], 1);               // the producer's arrive.expect_tx; the copies complete the rest
      mbarrierInit(&empty[s], 2 * 128);        // every consumer thread, after its wgmma read the stage
    }
    fenceBarrierInit();
  }
  if constexpr (CLUSTER) pdlLaunchDependents();
  __syncthreads();

  if (wg == 0) {
    if constexpr (MIN_BLOCKS == 1) setmaxnregDec<40>();
    if (threadIdx.x == 0) {
      // Decode rows launch under PDL: their first stages' weights (no kernel writes them) stream in before the
      // programmatic wait (pdl.cuh), overlapping the previous kernel's tail; the activations follow once it has
      // finished. Prefill launches keep the plain order.
      const int early = CLUSTER ? min(kTiles, STAGES) : 0;  // CLUSTER: one tile, firstTile
      for (int kt = 0; kt < early; ++kt) {
        mbarrierArriveExpectTx(&full[kt], kStageBytes);
        tmaLoad2d(tileW(kt), &mapW, (kBegin + kt) * kBK, tileCol(firstTile), &full[kt]);
      }
      if constexpr (CLUSTER) pdlWait();
      for (int kt = 0; kt < early; ++kt) tmaLoad2d(tileA(kt), &mapA, (kBegin + kt) * kBK, tileRow(firstTile), &full[kt]);
      int use = early;  // stage uses so far (over tiles): stage use % STAGES, in round use / STAGES
      for (int t = firstTile; t < tileCount; t += tileStep) {
        const int m0 = tileRow(t), n0 = tileCol(t);
        for (int kt = t == firstTile ? early : 0; kt < kTiles; ++kt, ++use) {
          const int s = use % STAGES;
          mbarrierWait(&empty[s], ((use / STAGES) & 1) ^ 1);
          mbarrierArriveExpectTx(&full[s], kStageBytes);
          tmaLoad2d(tileA(s), &mapA, (kBegin + kt) * kBK, m0, &full[s]);
          tmaLoad2d(tileW(s), &mapW, (kBegin + kt) * kBK, n0, &full[s]);
        }
      }
    }
    if constexpr (OUT == GemmOut::AddFloat && PARTS == WgParts::Whole) {
      // The residual this tile updates, asked of L2 once the last stage's loads are out (a few k-tiles before the
      // epilogue reads it): the epilogue's reads of c then wait on L2, not DRAM.
      if (threadIdx.x < 32 && gridDim.z == 1) {
        __syncwarp();
        prefetchTileL2<BM, BN>(p, tileRow(firstTile), tileCol(firstTile));
      }
    }
    if constexpr (CLUSTER) {
      addClusterParts<T, OUT, BN, WN, WN + 8>(p, reinterpret_cast<float*>(smem), tileRow(firstTile), tileCol(firstTile));
    }
    return;
  }
  if constexpr (MIN_BLOCKS == 1) setmaxnregInc<232>();  // 128·40 + 256·232 = the 384·168 registers at launch

  const int c = wg - 1, wgm = c / kWgN, wgn = c % kWgN;
  const int lane = threadIdx.x % 32, warp = (threadIdx.x / 32) % 4;
  int use = 0;  // as the producer's
  for (int t = firstTile; t < tileCount; t += tileStep) {
    const int m0 = tileRow(t), n0 = tileCol(t);
    float acc[WN / 2], total[WN / 2];  // total: the folded parts (FOLD only)
#pragma unroll
    for (int i = 0; i < WN / 2; ++i) acc[i] = total[i] = 0.f;

    for (int kt = 0; kt < kTiles; ++kt, ++use) {
      const int s = use % STAGES;
      mbarrierWait(&full[s], (use / STAGES) & 1);
      const T* a = tileA(s) + wgm * 64 * kBK;
      const T* w = tileW(s) + wgn * WN * kBK;
      wgmmaFence();
#pragma unroll
      for (int ks = 0; ks < kBK / 16; ++ks) {
        wgmma<WN, T>(acc, swizzle128Descriptor(a + ks * 16), swizzle128Descriptor(w + ks * 16));
      }
      wgmmaCommit();
      // Keep this k-tile's MMAs in flight; the previous one has finished reading its stage, so hand it back.
      wgmmaWait<1>();
      if (kt > 0) mbarrierArrive(&empty[(use - 1) % STAGES]);
      if constexpr (FOLD) {
        if ((kBegin + kt + 1) % kPartTiles == 0 || kt + 1 == kTiles) {  // a part ends: add it to the total
          wgmmaWait<0>();
#pragma unroll
          for (int i = 0; i < WN / 2; ++i) {
            total[i] += acc[i];
            acc[i] = 0.f;
          }
        }
      }
    }
    wgmmaWait<0>();
    if constexpr (TILES) {
      mbarrierArrive(&empty[(use - 1) % STAGES]);  // the tile's last stage: the producer may refill it
      storeTileBoxes<T, OUT, WN>(p, &mapC, acc, boxes + (c * 4 + warp) * 2 * kStoreBoxBytes, lane,
                                 m0 + wgm * 64 + warp * 16, n0 + wgn * WN);
      continue;
    }

    // Epilogue through shared memory (the pipeline stages, all consumed once both consumers pass the barrier): each
    // warp writes its 16 accumulator rows in fragment layout and reads them back as consecutive column pairs, so its
    // stores cover whole 128-byte lines and the epilogue is a short loop (unrolled over 128 accumulators, the erf
    // GELU alone is tens of KB of straight-line code).
    namedBarrierSync<1, 2 * 128>();
    constexpr int kLd = WN + 8;  // staging row stride (floats): a warp's float2 stores take 2 wavefronts, not 8
    static_assert(2 * 64 * kLd * 4 <= STAGES * kStageBytes, "staging fits the stages");
    float* staging = reinterpret_cast<float*>(smem) + (c * 64 + warp * 16) * kLd;
    stageFragments(staging, kLd, FOLD ? total : acc, lane);
    if constexpr (CLUSTER) {
      addClusterParts<T, OUT, BN, WN, kLd>(p, reinterpret_cast<float*>(smem), m0, n0);
      return;
    }
    __syncwarp();
    if constexpr (OUT == GemmOut::AddFloat) {
      if (gridDim.z == 1 && p.ldc % 2 == 0) {
        addResidualPairs<FOLD>(p, staging, kLd, WN, lane, m0 + wgm * 64 + warp * 16, n0 + wgn * WN);
        return;
      }
    }
#pragma unroll 4
    for (int i = lane; i < 16 * WN / 2; i += 32) {
      const int row = i / (WN / 2), col = i % (WN / 2) * 2;
      const float2 v = *reinterpret_cast<const float2*>(staging + row * kLd + col);
      const int m = m0 + wgm * 64 + warp * 16 + row, n = n0 + wgn * WN + col;
      if (m >= p.M) continue;
      if (OUT == GemmOut::AddFloat && gridDim.z > 1) {
        if (n < p.N) storeSplitPartial(p, blockIdx.z, m, n, v.x);
        if (n + 1 < p.N) storeSplitPartial(p, blockIdx.z, m, n + 1, v.y);
      } else if constexpr (FOLD) {
        storeSummedPair<T, OUT>(p, m, n, v.x, v.y);
      } else {
        epilogueStorePair<T, OUT>(p, m, n, v.x, v.y);
      }
    }
  }  // tiles
  if constexpr (TILES) {
    if (lane == 0) bulkWaitAll();
  }
#endif
}

// The split-K fixup, a kernel of its own: every output element in parallel adds the parts' partials in order
// (epilogue.cuh). The last split of each tile doing it, as the skinny kernel does, left one block per tile with a
// serial tail that made the small-M residual GEMMs of prefill ~2x slower (bench/NOTES-decode.md, session 3).
__global__ void __launch_bounds__(256) splitReduceKernel(const GemmParams p, int splits) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < int64_t(p.M) * p.N) addSplitPartials(p, splits, int(i / p.N), int(i % p.N));
}

// Writes whether this device runs the sm_90a image (a plain sm_90 or PTX-JIT build has no wgmma).
__global__ void wgmmaProbeKernel(int* hasWgmma) {
#ifdef FLASHMPT_HAS_WGMMA
  *hasWgmma = 1;
#else
  *hasWgmma = 0;
#endif
}

// Four block tiles. Large: 128×256, one block per SM (4 stages = 192 KB), each consumer 64×256 (128 accumulator
// registers, hence the setmaxnreg split). Small: 64×128, two blocks per SM, each consumer 64×64: four times the
// blocks, for grids the large tile would leave short of the SM count. Medium: 128×128, one block per SM, for the
// AddFloat outputs of many rows, whose consumers hold the folded total beside the accumulators (2 × 64 registers:
// the large tile's 2 × 128 do not fit). Decode: the small tile 8 stages deep (192 KB of weights and activations in
// flight per SM) for decode rows whose tile has at most kDeepDecodeMaxParts parts of K (gemmWgmmaDecode); registers
// still for two blocks, so the next kernel's blocks can start beside it where its shared memory allows. DecodeNarrow:
// the same, 96 columns wide, where 128-wide tiles would leave SMs idle (Wqkv: 48 tiles × 2 parts on 132 SMs; 96 wide,
// 64 × 2).
enum class WgTile { Large, Small, Medium, Decode, DecodeNarrow };

template <WgTile kTile>
struct WgTileShape;
template <>
struct WgTileShape<WgTile::Large> { static constexpr int kBM = 128, kBN = 256, kStages = 4, kMinBlocks = 1; };
template <>
struct WgTileShape<WgTile::Small> { static constexpr int kBM = 64, kBN = 128, kStages = 4, kMinBlocks = 2; };
template <>
struct WgTileShape<WgTile::Medium> { static constexpr int kBM = 128, kBN = 128, kStages = 6, kMinBlocks = 1; };
template <>
struct WgTileShape<WgTile::Decode> { static constexpr int kBM = 64, kBN = 128, kStages = 8, kMinBlocks = 2; };
template <>
struct WgTileShape<WgTile::DecodeNarrow> { static constexpr int kBM = 64, kBN = 96, kStages = 8, kMinBlocks = 2; };

// Whether launchForRows runs a tile's blocks over many output tiles each (WgParts::Tiles): the large tile's outputs
// in the compute dtype (Wqkv, mlp_up) where TMA can store them (storesByTma). Its AddFloat outputs fill about one
// wave (out_proj, mlp_down at 2048 rows: 128 tiles), and the small tile has no shared memory left for store boxes
// beside two blocks' stages.
template <WgTile kTile, GemmOut OUT>
constexpr bool walksTiles() {
  return kTile == WgTile::Large && (OUT == GemmOut::Half || OUT == GemmOut::HalfGelu);
}

// Whether TMA can store the output: a 16-byte aligned start and rows (the tensor map's contract).
bool storesByTma(const GemmParams& p) { return aligned16(p.c) && p.ldc % 8 == 0; }

// The kernels each tile is built for: the large tile has no room to fold AddFloat parts, the medium one only folds,
// the decode one only serves decode rows (Cluster), the small one every other layout.
template <WgTile kTile, GemmOut OUT, WgParts PARTS>
constexpr bool tileServes() {
  if constexpr (PARTS == WgParts::Tiles) return walksTiles<kTile, OUT>();
  if constexpr (PARTS == WgParts::Fold && OUT != GemmOut::AddFloat) return false;
  if constexpr (kTile == WgTile::Large) return PARTS == WgParts::Whole;
  if constexpr (kTile == WgTile::Medium) return PARTS == WgParts::Fold;
  if constexpr (kTile == WgTile::Decode || kTile == WgTile::DecodeNarrow) return PARTS == WgParts::Cluster;
  return true;
}

template <WgTile kTile, class T, GemmOut OUT, WgParts PARTS>
constexpr auto wgmmaKernel() {
  using S = WgTileShape<kTile>;
  return gemmWgmmaKernel<T, S::kBM, S::kBN, S::kStages, S::kMinBlocks, OUT, PARTS>;
}

template <WgTile kTile, WgParts PARTS>
constexpr int smemBytes() {
  using S = WgTileShape<kTile>;
  return wgmmaSmemBytes<S::kBM, S::kBN, S::kStages, PARTS == WgParts::Tiles>();
}

PFN_cuTensorMapEncodeTiled_v12000 encodeTiled() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found;
    const cudaError_t err =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found);
    return err == cudaSuccess && found == cudaDriverEntryPointSuccess
               ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f)
               : nullptr;
  }();
  return fn;
}

// Tensor map of a row-major [rows, cols] 16-bit matrix with row stride ld elements, loaded (A, W) or stored (C) in
// boxRows × 64 boxes with the 128-byte swizzle.
cudaError_t tileMap(CUtensorMap* map, DType dtype, const void* base, int rows, int cols, int64_t ld, int boxRows) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = encodeTiled();
  if (!encode) return cudaErrorNotSupported;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * 2};
  const cuuint32_t box[2] = {kBK, cuuint32_t(boxRows)};
  const cuuint32_t elementStrides[2] = {1, 1};
  const CUresult r = encode(map, dtype == DType::BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                            2, const_cast<void*>(base), dims, strides, box, elementStrides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

int64_t tiles(const GemmParams& p, int bm, int bn) { return int64_t((p.M + bm - 1) / bm) * ((p.N + bn - 1) / bn); }

// Row-invariant parts of K (FOLD).
int parts(int K) { return (K + kWgmmaPartK - 1) / kWgmmaPartK; }

// Most rows of an N-wide AddFloat output whose parts of K are spread over blocks (one part each): while the small
// tile's grid (64 × 128 outputs a block) fills at most half of `sms` SMs.
int splitRows(int N, int sms) { return 64 * (sms / (2 * ((N + 127) / 128))); }

// Blocks of blockIdx.z run perSplit k-tiles each; more than one such block: the fixup kernel adds their partials
// (Cluster: the blocks of blockIdx.z form a cluster and add them themselves).
template <WgTile kTile, class T, GemmOut OUT, WgParts PARTS>
cudaError_t launchWgmma(const GemmParams& p, int perSplit, int sms, cudaStream_t stream) {
  static_assert(tileServes<kTile, OUT, PARTS>(), "tile and output");
  using S = WgTileShape<kTile>;
  CUtensorMap mapA, mapW, mapC{};
  cudaError_t err = tileMap(&mapA, p.dtype, p.a, p.M, p.K, p.lda, S::kBM);
  if (err == cudaSuccess) err = tileMap(&mapW, p.dtype, p.w, p.N, p.K, p.ldw, S::kBN);
  if (err == cudaSuccess && PARTS == WgParts::Tiles) err = tileMap(&mapC, p.dtype, p.c, p.M, p.N, p.ldc, 16);
  if (err != cudaSuccess) return err;
  const int kTiles = (p.K + kBK - 1) / kBK;
  const dim3 grid = PARTS == WgParts::Tiles
                        ? dim3(unsigned(std::min<int64_t>(tiles(p, S::kBM, S::kBN), int64_t(sms) * S::kMinBlocks)))
                        : dim3((p.N + S::kBN - 1) / S::kBN, (p.M + S::kBM - 1) / S::kBM, (kTiles + perSplit - 1) / perSplit);
  // Decode rows launch under PDL (their weights stream in during the previous kernel's tail); prefill launches
  // measured 0.1-0.3 ms slower at 128 and 512 tokens under it (H100, session 7), so they launch as before.
  const bool cluster = PARTS == WgParts::Cluster;
  err = launchPdlCluster(p.pdl && cluster, dim3(1, 1, cluster ? grid.z : 1), wgmmaKernel<kTile, T, OUT, PARTS>(), grid,
                         dim3(kThreads), smemBytes<kTile, PARTS>(), stream, mapA, mapW, mapC, p, perSplit);
  if (err != cudaSuccess || grid.z == 1 || PARTS == WgParts::Cluster) return err;
  const int64_t outputs = int64_t(p.M) * p.N;
  splitReduceKernel<<<unsigned((outputs + 255) / 256), 256, 0, stream>>>(p, int(grid.z));
  return cudaGetLastError();
}

// The fastest layout for M: K split (AddFloat only) into as many parts as the grid leaves resident blocks free,
// each at least 4 k-tiles, as far as the split workspace holds them; not into fewer than 4, where the partials'
// traffic and the fixup cost more than the idle slots give (H100, session 3: 2 splits at M = 512 took out_proj
// 253 → 182 TFLOP/s). The large tile once its grid covers most SMs (2048 × 2048: 128 blocks on 132 SMs).
template <WgTile kTile, class T, GemmOut OUT>
cudaError_t launchForRows(const GemmParams& p, int sms, cudaStream_t stream) {
  using S = WgTileShape<kTile>;
  const int kTiles = (p.K + kBK - 1) / kBK;
  if constexpr (walksTiles<kTile, OUT>()) {
    if (storesByTma(p)) return launchWgmma<kTile, T, OUT, WgParts::Tiles>(p, kTiles, sms, stream);
  }
  const int64_t outputTiles = tiles(p, S::kBM, S::kBN);
  int64_t splits = OUT == GemmOut::AddFloat ? int64_t(sms) * S::kMinBlocks / outputTiles : 1;
  splits = std::min<int64_t>({splits, kTiles / 4, splitCapacity(p, outputTiles)});
  if (splits < 4) splits = 1;
  return launchWgmma<kTile, T, OUT, WgParts::Whole>(p, int((kTiles + splits - 1) / splits), sms, stream);
}

// Prompt rows of an AddFloat output (FOLD, bits independent of M): K's parts over blocks of the small tile while even
// that tile's grid would leave more than half the SMs idle (splitRows) and the split workspace holds the
// partials (out_proj at 128 rows: 32 tiles); else every block folds its own parts, in the medium tile once its grid
// covers most SMs. Measured against launchForRows on an H100 (bench/RESULTS.md, session 6): mlp_down at 2048 rows
// 138 vs 118 µs, out_proj 65 vs 57 µs — the price of invariance, paid only by passes of grouped prompts.
template <class T>
cudaError_t launchFoldedResidual(const GemmParams& p, int sms, cudaStream_t stream) {
  const int kTiles = (p.K + kBK - 1) / kBK;
  const size_t partials = size_t(parts(p.K)) * size_t(p.M) * size_t(p.N);
  const bool split = parts(p.K) > 1 && p.M <= splitRows(p.N, sms) && p.split_partials &&
                     partials <= p.split_partial_floats;
  if (split) return launchWgmma<WgTile::Small, T, GemmOut::AddFloat, WgParts::Fold>(p, kWgmmaPartK / kBK, sms, stream);
  return tiles(p, 128, 128) * 8 >= int64_t(sms) * 7
             ? launchWgmma<WgTile::Medium, T, GemmOut::AddFloat, WgParts::Fold>(p, kTiles, sms, stream)
             : launchWgmma<WgTile::Small, T, GemmOut::AddFloat, WgParts::Fold>(p, kTiles, sms, stream);
}

// Decode rows (M ≤ 64, one 64-row tile): K cut into parts by the shape and the SM count alone, never by M, so a row's
// sums are the same whatever rows run beside it (batch invariance). As many parts as keep the grid within one block
// per SM, at most a cluster's kMaxClusterParts, each part at least two k-tiles: the second block slot of each SM is
// then free for the next kernel's blocks, which start streaming their weights under PDL while this one finishes
// (H100, session 7: the 64-row decode chain 1.63 ms at two blocks per SM, 1.50 ms at one).
// Decode tiles of at most this many parts of K stream through the deep tile (WgTile::Decode): eight stages in flight
// took Wqkv and mlp_up at 64 rows from 13.4 / 14.7 to 10.2 / 12.4 µs on an H200 (session 8). Tiles of more parts (a
// cluster of 8 for out_proj and mlp_down: few k-tiles a block, a longer tail of adding parts) keep the small tile,
// whose 99 KB let the next kernel's blocks start streaming beside it: deep, they measured 7.2 → 9.8 and 15.9 → 18.5 µs.
constexpr int kDeepDecodeMaxParts = 2;

// The decode layout of an N × K weight in tiles `bn` wide: k-tiles per part, and blocks (tiles × parts).
struct DecodeLayout {
  int partTiles, parts, blocks;
};
DecodeLayout decodeLayout(int N, int K, int bn, int sms) {
  const int nTiles = (N + bn - 1) / bn, kTiles = (K + kBK - 1) / kBK;
  const int parts = std::clamp(sms / nTiles, 1, std::max(1, std::min(kMaxClusterParts, kTiles / 2)));
  const int partTiles = (kTiles + parts - 1) / parts;
  const int used = (kTiles + partTiles - 1) / partTiles;
  return {partTiles, used, nTiles * used};
}

template <WgTile kTile>
cudaError_t prepareTile() {
  auto each = [](auto t) {
    using T = typename decltype(t)::type;
    for (GemmOut out : {GemmOut::Half, GemmOut::HalfGelu, GemmOut::Float, GemmOut::AddFloat}) {
      const cudaError_t err = switchGemmOut(out, [&](auto o) {
        constexpr GemmOut OUT = decltype(o)::value;
        auto set = [](auto parts) {
          constexpr WgParts PARTS = decltype(parts)::value;
          if constexpr (tileServes<kTile, OUT, PARTS>()) {
            return cudaFuncSetAttribute(wgmmaKernel<kTile, T, OUT, PARTS>(),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes<kTile, PARTS>());
          } else {
            return cudaSuccess;
          }
        };
        cudaError_t e = set(std::integral_constant<WgParts, WgParts::Whole>{});
        if (e == cudaSuccess) e = set(std::integral_constant<WgParts, WgParts::Tiles>{});
        if (e == cudaSuccess) e = set(std::integral_constant<WgParts, WgParts::Fold>{});
        return e == cudaSuccess ? set(std::integral_constant<WgParts, WgParts::Cluster>{}) : e;
      });
      if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
  };
  const cudaError_t err = each(TypeTag<__nv_bfloat16>{});
  return err != cudaSuccess ? err : each(TypeTag<__half>{});
}

// Devices (by ordinal, up to 64) on which gemmWgmmaPrepare found the sm_90a image and the TMA encoder.
std::atomic<uint64_t> wgmmaDevices{0};

cudaError_t currentDevice(int* device) {
  const cudaError_t err = cudaGetDevice(device);
  return err == cudaSuccess && (*device < 0 || *device >= 64) ? cudaErrorInvalidDevice : err;
}

}  // namespace

cudaError_t gemmWgmmaPrepare() {
  int device = 0, major = 0, minor = 0;
  cudaError_t err = currentDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (err != cudaSuccess) return err;
  // sm_90a code runs on compute capability 9.0 only; elsewhere the tiled kernel serves every prefill GEMM.
  if (major != 9 || minor != 0 || !encodeTiled()) return cudaSuccess;
  int* flag = nullptr;
  int hasWgmma = 0;
  err = cudaMalloc(&flag, sizeof(int));
  if (err != cudaSuccess) return err;
  wgmmaProbeKernel<<<1, 1>>>(flag);
  err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaMemcpy(&hasWgmma, flag, sizeof(int), cudaMemcpyDeviceToHost);
  const cudaError_t freeErr = cudaFree(flag);
  if (err == cudaSuccess) err = freeErr;
  if (err == cudaSuccess && hasWgmma) err = prepareTile<WgTile::Large>();
  if (err == cudaSuccess && hasWgmma) err = prepareTile<WgTile::Small>();
  if (err == cudaSuccess && hasWgmma) err = prepareTile<WgTile::Medium>();
  if (err == cudaSuccess && hasWgmma) err = prepareTile<WgTile::Decode>();
  if (err == cudaSuccess && hasWgmma) err = prepareTile<WgTile::DecodeNarrow>();
  if (err == cudaSuccess && hasWgmma) wgmmaDevices.fetch_or(uint64_t(1) << device);
  return err;
}

bool gemmWgmmaReady() {
  int device = 0;
  return currentDevice(&device) == cudaSuccess && (wgmmaDevices.load() >> device & 1);
}

namespace {

// The current device's SM count, or cudaErrorNotSupported where gemmWgmmaPrepare did not find the kernel usable.
cudaError_t wgmmaDeviceSms(int* sms) {
  int device = 0;
  cudaError_t err = currentDevice(&device);
  if (err == cudaSuccess) err = multiprocessorCount(sms);
  if (err != cudaSuccess) return err;
  return wgmmaDevices.load() >> device & 1 ? cudaSuccess : cudaErrorNotSupported;
}

}  // namespace

cudaError_t gemmWgmma(const GemmParams& p, cudaStream_t stream) {
  int sms = 0;
  if (const cudaError_t err = wgmmaDeviceSms(&sms); err != cudaSuccess) return err;
  const bool large = tiles(p, 128, 256) * 8 >= int64_t(sms) * 7;
  return switchHalf(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    return switchGemmOut(p.out, [&](auto o) {
      constexpr GemmOut OUT = decltype(o)::value;
      if constexpr (OUT == GemmOut::AddFloat) {
        if (p.row_invariant) return launchFoldedResidual<T>(p, sms, stream);
      }
      return large ? launchForRows<WgTile::Large, T, OUT>(p, sms, stream)
                   : launchForRows<WgTile::Small, T, OUT>(p, sms, stream);
    });
  });
}

cudaError_t gemmWgmmaDecode(const GemmParams& p, cudaStream_t stream) {
  int sms = 0;
  if (const cudaError_t err = wgmmaDeviceSms(&sms); err != cudaSuccess) return err;
  if (p.M > kSkinnyMaxRows) return cudaErrorInvalidValue;
  const DecodeLayout wide = decodeLayout(p.N, p.K, 128, sms);
  const DecodeLayout narrow = decodeLayout(p.N, p.K, WgTileShape<WgTile::DecodeNarrow>::kBN, sms);
  const bool deep = wide.parts <= kDeepDecodeMaxParts;
  // Narrow tiles where they put more of the SMs to work in one wave, both deep.
  const bool useNarrow = deep && narrow.parts <= kDeepDecodeMaxParts && narrow.blocks <= sms && narrow.blocks > wide.blocks;
  return switchHalf(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    return switchGemmOut(p.out, [&](auto o) {
      constexpr GemmOut OUT = decltype(o)::value;
      if (useNarrow) return launchWgmma<WgTile::DecodeNarrow, T, OUT, WgParts::Cluster>(p, narrow.partTiles, sms, stream);
      return deep ? launchWgmma<WgTile::Decode, T, OUT, WgParts::Cluster>(p, wide.partTiles, sms, stream)
                  : launchWgmma<WgTile::Small, T, OUT, WgParts::Cluster>(p, wide.partTiles, sms, stream);
    });
  });
}

// A split for the rows (launchForRows) makes at most as many splits as resident blocks of the small tile (2 per SM,
// 64 × 128 outputs each) leave free, so splits × M × N stays within that (the large tile's grid covers most SMs: it
// never splits); a row-invariant split stores every part of up to splitRows rows.
size_t gemmWgmmaSplitFloats(int N, int K, int sms) {
  using S = WgTileShape<WgTile::Small>;
  const size_t forRows = size_t(sms) * S::kMinBlocks * S::kBM * S::kBN;
  const size_t invariant = parts(K) > 1 ? size_t(parts(K)) * size_t(splitRows(N, sms)) * size_t(N) : 0;
  return std::max(forRows, invariant);
}

}  // namespace flashmpt
