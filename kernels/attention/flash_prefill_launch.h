// Per-(dtype, head_dim) prefill launchers. Each is instantiated in its own flash_prefill_hdim*_*.cu so the
// 32 kernel variants compile in parallel; flash_prefill.cu validates and dispatches.
#pragma once
#include <cuda_runtime.h>

#include "attention_params.h"

namespace flashmpt {
namespace attn {

template <typename T, int kHeadDim>
cudaError_t run_flash_prefill(const FlashAttentionParams& params, cudaStream_t stream);

}  // namespace attn
}  // namespace flashmpt
