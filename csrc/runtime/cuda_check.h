// Every CUDA runtime call goes through CUDA_CHECK (allocations through cudaCheckAllocation): a failure becomes a
// FlashError (E_OUT_OF_MEMORY for an allocation failure, E_DEVICE otherwise) and never aborts the process.
// Non-sticky errors are cleared so the engine stays usable after, for example, an allocation that did not fit.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "csrc/runtime/byte_size.h"
#include "csrc/runtime/errors.h"

namespace flashmpt {

inline const char* cudaErrorCode(cudaError_t err) {
  return err == cudaErrorMemoryAllocation ? "E_OUT_OF_MEMORY" : "E_DEVICE";
}

inline void cudaCheck(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // reset the thread's last error; a sticky error stays with the context regardless
  throw FlashError(cudaErrorCode(err), std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ") in " +
                                           what + " at " + file + ":" + std::to_string(line));
}

// A failed cudaMalloc / cudaMallocHost, naming the bytes asked for and, for device memory, what the current
// device has free: a bare "out of memory" does not say whether the request or the device was the problem.
inline void cudaCheckAllocation(cudaError_t err, const char* call, size_t bytes, bool device_memory) {
  if (err == cudaSuccess) return;
  cudaGetLastError();
  std::string where = device_memory ? "" : " of page-locked host memory";
  int device = 0;
  size_t freeBytes = 0, totalBytes = 0;
  if (device_memory && cudaGetDevice(&device) == cudaSuccess &&
      cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess) {
    where = " on cuda:" + std::to_string(device) + " (" + formatGiB(double(freeBytes)) + " free of " +
            formatGiB(double(totalBytes)) + ")";
  }
  cudaGetLastError();
  throw FlashError(cudaErrorCode(err), std::string(call) + " of " + formatGiB(double(bytes)) + " (" +
                                           std::to_string(bytes) + " bytes)" + where + " failed: " +
                                           cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace flashmpt

#define CUDA_CHECK(expr) ::flashmpt::cudaCheck((expr), #expr, __FILE__, __LINE__)
