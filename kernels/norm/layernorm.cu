// A block per row (many rows: a block walks several, loading the next while it reduces the current), the row held in
// registers: each thread owns kPer elements strided by the block size (coalesced), and every load of the row, the
// residual, the weight and the bias is issued before the first use, so a row costs one memory round trip, then two
// block reductions (exact two-pass statistics from registers).
// Decode normalizes one row at a time on the critical path: a row that was staged through shared memory, with
// loads and stores interleaved in a runtime loop, paid several serialized L2 round trips instead.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/common/block_reduce.cuh"
#include "kernels/common/device.h"
#include "kernels/common/dispatch.h"
#include "kernels/common/half.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/norm/layernorm.h"

namespace flashmpt {
namespace {

// Rows of up to kLayerNormWalkMaxPer elements a thread are walked by fewer blocks than rows (r, r + gridDim.x, ...),
// each block loading its next row while it reduces the current one: 2048 rows of 2048 (H200, session 12) took
// 12.47 µs a block a row, 11.90 in blocks of 1024 threads an SM, 12.07 in 2048. Longer rows would spill the second
// row's registers: a block a row.
constexpr int kLayerNormWalkMaxPer = 8;
constexpr int kLayerNormThreadsPerSm = 1024;

template <class X, class Y, int kThreads, int kPer>
__global__ void __launch_bounds__(kThreads) layerNormKernel(const LayerNormParams p) {
  __shared__ float scratch[32];
  for (int i = threadIdx.x * 32; i < p.cols; i += kThreads * 32) {  // a line of each, 32 floats
    prefetchL2(p.weight + i);
    if (p.bias) prefetchL2(p.bias + i);
  }
  pdlLaunchDependents();
  pdlWait();
  // x_out and y may alias x (not restrict); the weights are never written.
  const float* __restrict__ weight = p.weight;
  const float* __restrict__ bias = p.bias;
  float w[kPer], b[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    w[j] = i < p.cols ? weight[i] : 0.f;
    b[j] = i < p.cols && bias ? bias[i] : 0.f;
  }
  // Row r (+ its residual) into v: this thread's kPer elements.
  auto loadRow = [&](int r, float (&v)[kPer]) {
    const X* x = static_cast<const X*>(p.x) + int64_t(r) * p.cols;
    const X* res = p.residual ? static_cast<const X*>(p.residual) + int64_t(r) * p.cols : nullptr;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * kThreads;
      const bool in = i < p.cols;
      v[j] = in ? toFloat<X>(x[i]) : 0.f;
      if (res) v[j] += in ? toFloat<X>(res[i]) : 0.f;
    }
  };
  auto normalizeRow = [&](int r, const float (&v)[kPer]) {
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) sum += v[j];
    const float mean = blockSum(sum, scratch) / p.cols;
    float sq = 0.f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const float d = threadIdx.x + j * kThreads < p.cols ? v[j] - mean : 0.f;
      sq = fmaf(d, d, sq);
    }
    const float rstd = rsqrtf(blockSum(sq, scratch) / p.cols + p.eps);
    const int64_t base = int64_t(r) * p.cols;
    X* xOut = p.x_out ? static_cast<X*>(p.x_out) + base : nullptr;
    Y* y = static_cast<Y*>(p.y) + base;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i >= p.cols) break;
      if (xOut) xOut[i] = fromFloat<X>(v[j]);
      y[i] = fromFloat<Y>(fmaf((v[j] - mean) * rstd, w[j], b[j]));
    }
  };

  float v[kPer];
  loadRow(blockIdx.x, v);
  if constexpr (kPer <= kLayerNormWalkMaxPer) {
    for (int r = blockIdx.x;; r += gridDim.x) {
      const int next = r + int(gridDim.x);
      float ahead[kPer];
      if (next < p.rows) loadRow(next, ahead);
      normalizeRow(r, v);
      if (next >= p.rows) break;
#pragma unroll
      for (int j = 0; j < kPer; ++j) v[j] = ahead[j];
    }
  } else {
    normalizeRow(blockIdx.x, v);
  }
}

// The smallest kPer (a power of two, ≤ kLayerNormMaxCols / 1024) whose block holds the row: 256 threads up to
// 8192 columns, 1024 beyond.
template <class X, class Y>
cudaError_t launchLayerNorm(const LayerNormParams& p, cudaStream_t stream) {
  int sms = 0;
  if (const cudaError_t err = multiprocessorCount(&sms); err != cudaSuccess) return err;
  auto launch = [&](auto threads, auto per) {
    constexpr int kThreads = decltype(threads)::value, kPer = decltype(per)::value;
    const int blocks = kPer <= kLayerNormWalkMaxPer ? std::min(p.rows, sms * kLayerNormThreadsPerSm / kThreads) : p.rows;
    return launchPdl(p.pdl, layerNormKernel<X, Y, kThreads, kPer>, dim3(blocks), dim3(kThreads), 0, stream, p);
  };
  using std::integral_constant;
  using T256 = integral_constant<int, 256>;
  if (p.cols <= 256) return launch(T256{}, integral_constant<int, 1>{});
  if (p.cols <= 512) return launch(T256{}, integral_constant<int, 2>{});
  if (p.cols <= 1024) return launch(T256{}, integral_constant<int, 4>{});
  if (p.cols <= 2048) return launch(T256{}, integral_constant<int, 8>{});
  if (p.cols <= 4096) return launch(T256{}, integral_constant<int, 16>{});
  if (p.cols <= 8192) return launch(T256{}, integral_constant<int, 32>{});
  return launch(integral_constant<int, 1024>{}, integral_constant<int, kLayerNormMaxCols / 1024>{});
}

}  // namespace

cudaError_t layerNorm(const LayerNormParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols <= 0 || p.cols > kLayerNormMaxCols || !p.x || !p.y || !p.weight) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  return switchAny(p.x_dtype, [&](auto xt) {
    return switchAny(p.y_dtype, [&](auto yt) {
      return launchLayerNorm<typename decltype(xt)::type, typename decltype(yt)::type>(p, stream);
    });
  });
}

}  // namespace flashmpt
