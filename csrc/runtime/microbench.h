// Ceilings and kernel timings that `flash-mpt bench` states its results against, measured in the same run on
// the same device (DESIGN.md §5). Builds without CUDA throw FlashError E_DEVICE.
#pragma once
#include <vector>

namespace flashmpt {

struct Ceilings {
  double copy_gb_s = 0;    // device-to-device copy of 1 GiB, bytes read + written per second
  double gemm_tflops = 0;  // flash-mpt's own bf16 GEMM at 8192³ (kernels/gemm)
};

struct AttentionTiming {
  int seqlen = 0, batch = 0;
  double ms = 0, tflops = 0;  // causal FLOPs counted as 4·B·H·S²·D/2
};

Ceilings measureCeilings(int device);
// Prefill attention (bf16, causal, ALiBi) at batch × seqlen = `tokens`, `heads` × 128, layout [B][S][H][D].
std::vector<AttentionTiming> measureAttention(int device, const std::vector<int>& seqlens, int tokens, int heads);

}  // namespace flashmpt
