// Queries of the current CUDA device that the kernels' launchers size their grids by, and the 16-byte alignment
// their vector loads, stores and tensor maps need.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace flashmpt {

__host__ __device__ inline bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

// The current device's SM count.
inline cudaError_t multiprocessorCount(int* sms) {
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  return err != cudaSuccess ? err : cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, device);
}

}  // namespace flashmpt
