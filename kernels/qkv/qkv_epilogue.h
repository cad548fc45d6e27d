// After the fused Wqkv projection (bias already added by the GEMM), in one pass per token row:
//   clip the row to [-clip, clip] (when clip > 0), split it into q, k, v (d_model wide each, in that order),
//   LayerNorm q and k over the full d_model (QK-LayerNorm, fp32 statistics, when q_ln_weight is set),
//   write q to its own buffer and k, v into the KV cache at the sequence's slot and position.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt {

struct QkvEpilogueParams {
  const void* qkv = nullptr;  // [rows, 3·d_model] dtype, contiguous
  void* q = nullptr;          // [rows, d_model] dtype, contiguous (heads are contiguous head_dim slices)
  // Cache element (slot, position, c) lives at cache + slot·slot_stride + position·row_stride + c.
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  int64_t slot_stride = 0, row_stride = 0;
  // Where row r goes: slots[r] and positions[r] (device arrays; a negative position skips the cache write,
  // for padding rows), or, when slots is nullptr, slot0 and position0 + r.
  const int* slots = nullptr;
  const int* positions = nullptr;
  int slot0 = 0, position0 = 0;
  const float* q_ln_weight = nullptr;  // [d_model]; nullptr: no QK-LayerNorm
  const float* q_ln_bias = nullptr;
  const float* k_ln_weight = nullptr;
  const float* k_ln_bias = nullptr;
  int rows = 0, d_model = 0;
  float clip = 0.f;  // <= 0: no clipping
  float eps = 1e-5f;
  DType dtype = DType::BF16;  // of qkv, q and the caches: BF16, F16 or F32
  bool pdl = false;           // programmatic dependent launch (kernels/common/pdl.cuh)
};

cudaError_t qkvEpilogue(const QkvEpilogueParams& params, cudaStream_t stream);

}  // namespace flashmpt
