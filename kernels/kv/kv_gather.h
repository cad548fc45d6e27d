// Copies the first `rows` key and value rows of one sequence out of the paged KV cache into contiguous buffers,
// so the prefill attention kernels (which take contiguous K and V) can run a chunk appended to a cached prefix.
// CPU reference: the gather is KvRows::offset (paged_kv.h) applied row by row; checked through the engine tests.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"
#include "kernels/kv/paged_kv.h"

namespace flashmpt {

struct KvGatherParams {
  const void* k_cache = nullptr;  // one layer's pools
  const void* v_cache = nullptr;
  KvRows rows;                    // the sequence's rows in them (table on the device)
  void* k_out = nullptr;          // [rows, d_model] contiguous
  void* v_out = nullptr;
  int rows_count = 0, d_model = 0;  // rows of d_model elements, a whole number of 16-byte vectors
  DType dtype = DType::BF16;
  bool pdl = false;                 // programmatic dependent launch (kernels/common/pdl.cuh)
};

cudaError_t kvGather(const KvGatherParams& params, cudaStream_t stream);

}  // namespace flashmpt
