// Every CUDA runtime call goes through CUDA_CHECK: a failure becomes a FlashError (E_OUT_OF_MEMORY for an
// allocation failure, E_DEVICE otherwise) and never aborts the process. Non-sticky errors are cleared so the
// engine stays usable after, for example, an allocation that did not fit.
#pragma once
#include <cuda_runtime.h>

#include <string>

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

}  // namespace flashmpt

#define CUDA_CHECK(expr) ::flashmpt::cudaCheck((expr), #expr, __FILE__, __LINE__)
