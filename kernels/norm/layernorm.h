// LayerNorm over the last dimension with fp32 statistics, optionally after a residual add:
//   s = x (+ residual), y = (s − mean(s)) / sqrt(var(s) + eps) · weight (+ bias), var biased.
// s can be written back (x_out) so one pass updates a residual stream and normalizes it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt {

// Rows are held in registers (kernels/norm/layernorm.cu): at most this many columns.
constexpr int kLayerNormMaxCols = 32768;

struct LayerNormParams {
  const void* x = nullptr;         // [rows, cols] x_dtype, contiguous
  const void* residual = nullptr;  // [rows, cols] x_dtype or nullptr
  void* x_out = nullptr;           // [rows, cols] x_dtype: receives x + residual; nullptr: not stored; may alias x
  void* y = nullptr;               // [rows, cols] y_dtype, contiguous; must not alias x unless the dtypes match
  const float* weight = nullptr;   // [cols]
  const float* bias = nullptr;     // [cols] or nullptr
  int rows = 0, cols = 0;
  float eps = 1e-5f;
  DType x_dtype = DType::F32;  // F32, BF16 or F16
  DType y_dtype = DType::BF16;  // F32, BF16 or F16
  bool pdl = false;             // programmatic dependent launch (kernels/common/pdl.cuh)
};

cudaError_t layerNorm(const LayerNormParams& params, cudaStream_t stream);

}  // namespace flashmpt
