// Instantiates the head_dim 128, fp16 prefill kernels (short and long tiles x causal x ALiBi) in a
// translation unit of their own.
#include "flash_prefill_kernel.cuh"
#include "flash_prefill_launch.h"

namespace flashmpt {
namespace attn {
template cudaError_t run_flash_prefill<__half, 128>(const FlashAttentionParams&, cudaStream_t);
}  // namespace attn
}  // namespace flashmpt
