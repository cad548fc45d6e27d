// Entry point of prefill attention: validates what could fault or silently misread memory, then dispatches on
// (dtype, head_dim) to the launchers of flash_prefill_hdim*_*.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "attention_params.h"
#include "flash_prefill_launch.h"
#include "static_switch.h"
#include "kernels/common/device.h"

namespace flashmpt {

namespace {
// Rows are read as 16-byte vectors: every stride must keep each row 16-byte aligned (8 elements).
bool vec_stride(int64_t stride) { return stride % 8 == 0; }
}  // namespace

cudaError_t flash_attention_prefill(const FlashAttentionParams& p, cudaStream_t stream) {
  if (p.dtype != AttnDType::F16 && p.dtype != AttnDType::BF16) return cudaErrorInvalidValue;
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorInvalidValue;
  if (p.batch < 0 || p.n_heads < 0 || p.seqlen_q < 0 || p.seqlen_k < 0) return cudaErrorInvalidValue;
  if (p.batch == 0 || p.n_heads == 0 || p.seqlen_q == 0) return cudaSuccess;  // nothing to write
  if (p.seqlen_k == 0) return cudaErrorInvalidValue;
  // Grid limits, and positions kept exact in fp32 for ALiBi (j - i below 2^24).
  if (p.n_heads > 65535 || p.batch > 65535 || p.seqlen_q > (1 << 24) || p.seqlen_k > (1 << 24))
    return cudaErrorInvalidValue;
  if (!p.q || !p.k || !p.v || !p.o) return cudaErrorInvalidValue;
  // Packed prompts: both arrays, one length bound for queries and keys.
  if ((p.seg_row0 != nullptr) != (p.seg_len != nullptr) || (p.seg_len && p.seqlen_q != p.seqlen_k)) return cudaErrorInvalidValue;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return cudaErrorInvalidValue;
  const int64_t strides[] = {p.q_batch_stride, p.q_row_stride, p.q_head_stride, p.k_batch_stride,
                             p.k_row_stride,   p.k_head_stride, p.v_batch_stride, p.v_row_stride,
                             p.v_head_stride, p.o_batch_stride, p.o_row_stride,   p.o_head_stride};
  for (int64_t s : strides)
    if (!vec_stride(s)) return cudaErrorInvalidValue;
  return DTYPE_SWITCH(p.dtype, T, [&] {
    return HEADDIM_SWITCH(p.head_dim, kHeadDim, [&] { return attn::run_flash_prefill<T, kHeadDim>(p, stream); });
  });
}

}  // namespace flashmpt
