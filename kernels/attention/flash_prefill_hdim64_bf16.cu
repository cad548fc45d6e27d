// Instantiates the head_dim 64, bf16 prefill kernels (short and long tiles x causal x ALiBi) in a
// translation unit of their own.
#include "flash_prefill_kernel.cuh"
#include "flash_prefill_launch.h"

namespace flashmpt {
namespace attn {
template cudaError_t run_flash_prefill<__nv_bfloat16, 64>(const FlashAttentionParams&, cudaStream_t);
}  // namespace attn
}  // namespace flashmpt
