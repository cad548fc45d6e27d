// The model's weights on the device, in one allocation: Linear weights (and the tied embedding) in the
// compute dtype, LayerNorm weights and all biases in fp32 (they are tiny and feed fp32 epilogues).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "csrc/engine/engine.h"
#include "csrc/runtime/device_buffer.h"

namespace flashmpt {

struct LayerWeights {
  const float* ln1_w = nullptr;
  const float* ln1_b = nullptr;
  const void* wqkv = nullptr;  // [3·d_model, d_model]
  const float* bqkv = nullptr;
  const float* q_ln_w = nullptr;  // QK-LayerNorm over d_model
  const float* q_ln_b = nullptr;
  const float* k_ln_w = nullptr;
  const float* k_ln_b = nullptr;
  const void* wout = nullptr;  // [d_model, d_model]
  const float* bout = nullptr;
  const float* ln2_w = nullptr;
  const float* ln2_b = nullptr;
  const void* wup = nullptr;  // [d_ff, d_model]
  const float* bup = nullptr;
  const void* wdown = nullptr;  // [d_model, d_ff]
  const float* bdown = nullptr;
};

struct ModelWeights {
  DeviceBuffer arena;
  const void* wte = nullptr;  // [vocab, d_model]: embedding and (tied) LM head
  const float* lnf_w = nullptr;
  const float* lnf_b = nullptr;
  std::vector<LayerWeights> layers;
};

// Bytes the arena needs for this config and compute dtype (for the up-front memory check).
int64_t modelWeightBytes(const ModelConfig& config, DType compute_dtype);

// Allocates the arena and fills it: from options.tensors (converted to the device dtypes on the way, chunk by
// chunk, never a second full host copy), or from the seeded generator when options.random_weights.
// Throws FlashError: E_CHECKPOINT (missing or misshapen tensor), E_OUT_OF_MEMORY, E_DEVICE.
ModelWeights loadModelWeights(const EngineOptions& options, cudaStream_t stream);

}  // namespace flashmpt
