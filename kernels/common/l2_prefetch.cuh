// L2 prefetch: `prefetch.global.L2` asks for a 128-byte line and returns at once, so a few instructions per
// thread put megabytes in flight without registers or waiting.
#pragma once
#include <cstdint>

#include "kernels/common/l2_prefetch.h"

namespace flashmpt {

// Thread `index` of `count` prefetches every count-th 128-byte line of [ptr, ptr + bytes).
__device__ __forceinline__ void l2Prefetch(const void* ptr, int64_t bytes, int64_t index, int64_t count) {
  const char* base = static_cast<const char*>(ptr);
  for (int64_t offset = index * 128; offset < bytes; offset += count * 128) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(base + offset));
  }
}

}  // namespace flashmpt
