// After the fused Wqkv projection (bias already added by the GEMM), in one pass per token row:
//   clip the row to [-clip, clip] (when clip > 0), split it into q, k, v (d_model wide each, in that order),
//   LayerNorm q and k over the full d_model (QK-LayerNorm, fp32 statistics, when q_ln_weight is set),
//   write q to its own buffer and k, v into the KV cache (paged or contiguous: kernels/kv/paged_kv.h) at the
//   row's sequence and position.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"
#include "kernels/kv/paged_kv.h"

namespace flashmpt {

struct QkvEpilogueParams {
  const void* qkv = nullptr;  // [rows, 3·d_model] dtype, contiguous
  void* q = nullptr;          // [rows, d_model] dtype, contiguous (heads are contiguous head_dim slices)
  // Cache element (sequence b, position, c) lives at cache + kv.sequence(b).offset(position) + c.
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  KvLayout kv;
  // Where row r goes: sequence sequences[r] of kv at positions[r] (device arrays; a negative position skips the
  // cache write, for padding rows), or, when sequences is nullptr, sequence 0 at position0 + r.
  const int* sequences = nullptr;
  const int* positions = nullptr;
  int position0 = 0;
  // Optional: k and v also to these [*, d_model] buffers, at row position0 + r (a chunk: sequences nullptr), or at
  // row r (sequences given: a prompts pass, its rows in pass order).
  void* k_seq = nullptr;
  void* v_seq = nullptr;
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
