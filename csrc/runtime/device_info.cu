#include "csrc/runtime/device_info.h"

#include <cuda_runtime.h>

#include "csrc/runtime/cuda_check.h"

namespace flashmpt {

DeviceInfo queryDeviceInfo(int device) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  if (device < 0 || device >= count) {
    fail("E_DEVICE", "CUDA device " + std::to_string(device) + " does not exist: " + std::to_string(count) + " visible");
  }
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  CUDA_CHECK(cudaDriverGetVersion(&info.driver_cuda_version));
  CUDA_CHECK(cudaRuntimeGetVersion(&info.runtime_cuda_version));

  int previous = 0;
  CUDA_CHECK(cudaGetDevice(&previous));
  CUDA_CHECK(cudaSetDevice(device));
  const cudaError_t status = cudaMemGetInfo(&info.free_bytes, &info.total_bytes);
  cudaSetDevice(previous);
  CUDA_CHECK(status);
  return info;
}

}  // namespace flashmpt
