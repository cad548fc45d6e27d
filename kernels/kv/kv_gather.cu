// One block per row; each thread moves 16-byte vectors of K and V.
#include <cuda_runtime.h>

#include "kernels/common/pdl.cuh"
#include "kernels/kv/kv_gather.h"

namespace flashmpt {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads) kvGatherKernel(const KvGatherParams p, int element_bytes,
                                                           int vectors_per_row) {
  pdlWait();
  pdlLaunchDependents();
  const int row = blockIdx.x;
  const int64_t at = p.rows.offset(row) * element_bytes, out = int64_t(row) * p.d_model * element_bytes;
  const uint4* k = reinterpret_cast<const uint4*>(static_cast<const char*>(p.k_cache) + at);
  const uint4* v = reinterpret_cast<const uint4*>(static_cast<const char*>(p.v_cache) + at);
  uint4* kOut = reinterpret_cast<uint4*>(static_cast<char*>(p.k_out) + out);
  uint4* vOut = reinterpret_cast<uint4*>(static_cast<char*>(p.v_out) + out);
  for (int i = threadIdx.x; i < vectors_per_row; i += kThreads) {
    kOut[i] = k[i];
    vOut[i] = v[i];
  }
}

}  // namespace

cudaError_t kvGather(const KvGatherParams& p, cudaStream_t stream) {
  // Rows move as 16-byte vectors: 8 half or 4 float elements each, so every row offset must be a multiple of that.
  const int elementBytes = p.dtype == DType::F32 ? 4 : 2, perVector = 16 / elementBytes;
  if (p.d_model <= 0 || p.d_model % perVector != 0 || p.rows_count < 0 || !p.k_cache || !p.v_cache || !p.k_out ||
      !p.v_out || p.rows.row_stride % perVector != 0 || p.rows.block_stride % perVector != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rows_count == 0) return cudaSuccess;
  return launchPdl(p.pdl, kvGatherKernel, dim3(p.rows_count), dim3(kThreads), 0, stream, p, elementBytes,
                   p.d_model / perVector);
}

}  // namespace flashmpt
