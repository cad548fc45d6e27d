// The CUDA entry points of a build made without nvcc (FLASH_MPT_CUDA=0, no CUDA toolkit, or node-gyp).
#ifndef FLASH_MPT_WITH_CUDA
#include "csrc/engine/engine.h"
#include "csrc/runtime/errors.h"
#include "csrc/runtime/microbench.h"

namespace flashmpt {

std::unique_ptr<Engine> createCudaEngine(const EngineOptions&) {
  fail("E_DEVICE",
       "this build of flash-mpt has no CUDA backend: install the CUDA toolkit (nvcc) and run `npm run build` "
       "(or FLASH_MPT_CUDA=1 npm run build), or use device 'cpu'");
}

int cudaDeviceCount() { return 0; }

Ceilings measureCeilings(int) { fail("E_DEVICE", "this build of flash-mpt has no CUDA backend: GPU ceilings cannot be measured"); }

std::vector<AttentionTiming> measureAttention(int, const std::vector<int>&, int, int) {
  fail("E_DEVICE", "this build of flash-mpt has no CUDA backend: the attention kernel cannot be timed");
}

}  // namespace flashmpt
#endif
