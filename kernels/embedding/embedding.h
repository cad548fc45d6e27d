// Token embedding gather into the fp32 residual stream: out[r, :] = table[ids[r], :].
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt {

struct EmbeddingParams {
  const int32_t* ids = nullptr;  // device [rows], each in [0, vocab) (checked by the caller)
  const void* table = nullptr;   // [vocab, d_model] dtype
  float* out = nullptr;          // [rows, d_model]
  int rows = 0, d_model = 0;
  DType dtype = DType::BF16;     // of the table: F32, BF16 or F16
};

cudaError_t embeddingGather(const EmbeddingParams& params, cudaStream_t stream);

}  // namespace flashmpt
