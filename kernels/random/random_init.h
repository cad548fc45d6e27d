// Seeded weights made on the device: out[i] = mean + N(0, stddev²) sample i of `stream`, the same counter-based
// generator as the CPU reference (cpu::fillNormal: Box-Muller on pair i/2 of mix64(stream + (i/2 + 1)·φ)), so
// a random-weight model is the same model on either backend (up to the last bit of log/cos/sin, and the
// rounding to the compute dtype). stddev 0 fills with `mean`.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt {

struct RandomInitParams {
  void* out = nullptr;  // [n] dtype: F32, BF16 or F16
  int64_t n = 0;
  uint64_t stream = 0;  // cpu::normalStream(seed, tensor name)
  float mean = 0.f, stddev = 0.f;
  DType dtype = DType::BF16;
};

cudaError_t randomInit(const RandomInitParams& params, cudaStream_t stream);

}  // namespace flashmpt
