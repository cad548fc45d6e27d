// A byte range that a later kernel reads, named to an earlier one so it can pull the bytes into L2 while it is
// latency bound (HBM otherwise idle). Host-side type; the device helper is in l2_prefetch.cuh.
#pragma once
#include <cstdint>

namespace flashmpt {

struct L2Range {
  const void* ptr = nullptr;
  int64_t bytes = 0;  // 0: nothing
};

}  // namespace flashmpt
