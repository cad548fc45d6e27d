// The GEMMs' own PTX beyond the shared tensor-core wrappers (kernels/common/mma.cuh): a streaming 16-byte
// global load for weights read exactly once.
#pragma once
#include <cstdint>

#include "kernels/common/mma.cuh"

namespace flashmpt {

// 16 bytes that are read once: bypass L1 so they do not evict the activations the kernel re-reads.
__device__ __forceinline__ uint4 loadStreaming16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

}  // namespace flashmpt
