// Queries of the current CUDA device that the kernels' launchers size their grids by.
#pragma once
#include <cuda_runtime.h>

namespace flashmpt {

// The current device's SM count.
inline cudaError_t multiprocessorCount(int* sms) {
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  return err != cudaSuccess ? err : cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, device);
}

}  // namespace flashmpt
