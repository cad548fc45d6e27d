// Prefill GEMM: BM×BN×32 block tiles, a STAGES-deep cp.async pipeline (one barrier per k-tile), ldmatrix from
// XOR-swizzled shared memory, mma.sync m16n8k16 with fp32 accumulators, and the fused epilogue.
//
// Shared-memory tile rows are 32 elements = 64 bytes = four 16-byte chunks. ldmatrix reads one chunk from
// each of 8 consecutive rows; storing chunk c of row r at c ^ ((r >> 1) & 3) spreads those 8 reads over all
// 32 banks (two rows share a 128-byte bank line, the XOR separates the four pairs).
#include <cuda_runtime.h>

#include "kernels/common/dispatch.h"
#include "kernels/gemm/epilogue.cuh"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_ptx.cuh"

namespace flashmpt {
namespace {

constexpr int kBK = 32;

template <int BM, int BN, int STAGES>
constexpr int tiledSmemBytes() { return STAGES * (BM + BN) * kBK * 2; }

__device__ __forceinline__ int swizzled(int row, int chunk) { return row * kBK + ((chunk ^ ((row >> 1) & 3)) << 3); }

template <class T, int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, int MIN_BLOCKS, GemmOut OUT>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32, MIN_BLOCKS) gemmTiledKernel(const GemmParams p) {
  constexpr int kThreads = WARPS_M * WARPS_N * 32;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  constexpr int MT = WM / 16, NT = WN / 8;             // mma tiles per warp
  constexpr int kStage = (BM + BN) * kBK;              // elements per pipeline stage
  static_assert(MT >= 1 && NT % 2 == 0 && (BM * 4) % kThreads == 0 && (BN * 4) % kThreads == 0, "tile shape");

  extern __shared__ __align__(128) unsigned char smemBytes[];
  T* smem = reinterpret_cast<T*>(smemBytes);
  const T* A = static_cast<const T*>(p.a);
  const T* W = static_cast<const T*>(p.w);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kTiles = (p.K + kBK - 1) / kBK;

  auto loadTile = [&](int stage, int kt) {
    T* sA = smem + stage * kStage;
    T* sB = sA + BM * kBK;
    const int k0 = kt * kBK;
#pragma unroll
    for (int i = 0; i < BM * 4 / kThreads; ++i) {
      const int idx = tid + i * kThreads, row = idx >> 2, chunk = idx & 3;
      const int gm = m0 + row, gk = k0 + chunk * 8;
      const bool ok = gm < p.M && gk < p.K;
      cpAsync16(sharedAddress(sA + swizzled(row, chunk)), ok ? A + int64_t(gm) * p.lda + gk : A, ok);
    }
#pragma unroll
    for (int i = 0; i < BN * 4 / kThreads; ++i) {
      const int idx = tid + i * kThreads, row = idx >> 2, chunk = idx & 3;
      const int gn = n0 + row, gk = k0 + chunk * 8;
      const bool ok = gn < p.N && gk < p.K;
      cpAsync16(sharedAddress(sB + swizzled(row, chunk)), ok ? W + int64_t(gn) * p.ldw + gk : W, ok);
    }
  };

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < kTiles) loadTile(s, s);
    cpAsyncCommit();
  }

  for (int kt = 0; kt < kTiles; ++kt) {
    cpAsyncWait<STAGES - 2>();  // tile kt has landed (this thread's copies) ...
    __syncthreads();            // ... everyone's, and the stage refilled below is no longer read
    const int next = kt + STAGES - 1;
    if (next < kTiles) loadTile(next % STAGES, next);
    cpAsyncCommit();

    const T* sA = smem + (kt % STAGES) * kStage;
    const T* sB = sA + BM * kBK;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        // matrices: rows 0-7 / 8-15 × k 0-7, then × k 8-15 (a0a1, a2a3, a4a5, a6a7)
        const int row = wm * WM + mt * 16 + (lane & 15);
        ldmatrixX4(af[mt], sharedAddress(sA + swizzled(row, ks * 2 + (lane >> 4))));
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        // matrices: n 0-7 × k 0-7, n 0-7 × k 8-15, n 8-15 × k 0-7, n 8-15 × k 8-15
        const int row = wn * WN + np * 16 + (lane & 7) + ((lane >> 4) << 3);
        uint32_t r[4];
        ldmatrixX4(r, sharedAddress(sB + swizzled(row, ks * 2 + ((lane >> 3) & 1))));
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma16816<T>(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
    }
  }
  cpAsyncWait<0>();

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int row = m0 + wm * WM + mt * 16 + (lane >> 2);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int col = n0 + wn * WN + nt * 8 + (lane & 3) * 2;
      if (row < p.M) epilogueStorePair<T, OUT>(p, row, col, acc[mt][nt][0], acc[mt][nt][1]);
      if (row + 8 < p.M) epilogueStorePair<T, OUT>(p, row + 8, col, acc[mt][nt][2], acc[mt][nt][3]);
    }
  }
}

// Block shapes, each with 8 warps in a 2 × 4 grid: 128×128 (64×32 per warp, two blocks per SM) when its grid
// fills the GPU, else 64×128 (twice the blocks). A 128×256 tile with 64×64 warp tiles (one block per SM, 217
// registers) measured slower on an H200 (mlp_up at 2048 tokens: 167 vs 278 TFLOP/s), so it is not offered.
enum class Tile { Medium, Small };
constexpr int kStages = 4, kThreads = 256;

template <Tile kTile>
struct TileShape;
template <>
struct TileShape<Tile::Medium> { static constexpr int kBM = 128, kBN = 128, kMinBlocks = 2; };
template <>
struct TileShape<Tile::Small> { static constexpr int kBM = 64, kBN = 128, kMinBlocks = 2; };

template <Tile kTile, class T, GemmOut OUT>
constexpr auto tiledKernel() {
  using S = TileShape<kTile>;
  return gemmTiledKernel<T, S::kBM, S::kBN, 2, 4, kStages, S::kMinBlocks, OUT>;
}

template <Tile kTile>
constexpr int smemBytes() { return tiledSmemBytes<TileShape<kTile>::kBM, TileShape<kTile>::kBN, kStages>(); }

template <Tile kTile, class T, GemmOut OUT>
cudaError_t launchTiled(const GemmParams& p, cudaStream_t stream) {
  using S = TileShape<kTile>;
  const dim3 grid((p.N + S::kBN - 1) / S::kBN, (p.M + S::kBM - 1) / S::kBM);
  tiledKernel<kTile, T, OUT>()<<<grid, kThreads, smemBytes<kTile>(), stream>>>(p);
  return cudaGetLastError();
}

template <Tile kTile>
cudaError_t prepareTile() {
  auto each = [](auto t) {
    using T = typename decltype(t)::type;
    for (GemmOut out : {GemmOut::Half, GemmOut::HalfGelu, GemmOut::Float, GemmOut::AddFloat}) {
      const cudaError_t err = switchGemmOut(out, [&](auto o) {
        return cudaFuncSetAttribute(tiledKernel<kTile, T, decltype(o)::value>(),
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes<kTile>());
      });
      if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
  };
  const cudaError_t err = each(TypeTag<__nv_bfloat16>{});
  return err != cudaSuccess ? err : each(TypeTag<__half>{});
}

int64_t tiles(const GemmParams& p, int bm, int bn) { return int64_t((p.M + bm - 1) / bm) * ((p.N + bn - 1) / bn); }

}  // namespace

cudaError_t gemmTiledPrepare() {
  const cudaError_t err = prepareTile<Tile::Medium>();
  return err != cudaSuccess ? err : prepareTile<Tile::Small>();
}

cudaError_t gemmTiled(const GemmParams& p, cudaStream_t stream) {
  int sms = 0;
  if (const cudaError_t err = multiprocessorCount(&sms); err != cudaSuccess) return err;
  const Tile tile = tiles(p, 128, 128) >= sms ? Tile::Medium : Tile::Small;
  return switchHalf(p.dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    return switchGemmOut(p.out, [&](auto o) {
      constexpr GemmOut OUT = decltype(o)::value;
      return tile == Tile::Medium ? launchTiled<Tile::Medium, T, OUT>(p, stream)
                                  : launchTiled<Tile::Small, T, OUT>(p, stream);
    });
  });
}

}  // namespace flashmpt
