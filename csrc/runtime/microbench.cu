#include "csrc/runtime/microbench.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "csrc/runtime/cuda_check.h"
#include "csrc/runtime/device_buffer.h"
#include "kernels/attention/attention_params.h"
#include "kernels/gemm/gemm.h"
#include "kernels/random/random_init.h"

namespace flashmpt {
namespace {

// Median milliseconds of `reps` launches of work(), after two warm-up launches, timed with events.
template <typename Work>
double medianMs(cudaStream_t stream, int reps, Work&& work) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> times;
  try {
    for (int i = 0; i < 2; i++) work();
    for (int i = 0; i < reps; i++) {
      CUDA_CHECK(cudaEventRecord(start, stream));
      work();
      CUDA_CHECK(cudaEventRecord(stop, stream));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      times.push_back(ms);
    }
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Timing on random data, never zeros (zeros can run faster than real data).
void fillRandom(void* out, int64_t n, uint64_t stream_id, cudaStream_t stream) {
  RandomInitParams p;
  p.out = out;
  p.n = n;
  p.stream = stream_id;
  p.stddev = 1.f;
  p.dtype = DType::BF16;
  CUDA_CHECK(randomInit(p, stream));
}

struct StreamGuard {
  cudaStream_t stream = nullptr;
  StreamGuard() { CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
  ~StreamGuard() { cudaStreamDestroy(stream); }
};

}  // namespace

Ceilings measureCeilings(int device) {
  CUDA_CHECK(cudaSetDevice(device));
  StreamGuard guard;
  cudaStream_t stream = guard.stream;
  Ceilings result;
  {
    const size_t bytes = size_t(1) << 30;  // far past L2
    DeviceBuffer src(bytes), dst(bytes);
    fillRandom(src.get(), bytes / 2, 1, stream);
    const double ms = medianMs(stream, 20, [&] { CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream)); });
    result.copy_gb_s = 2.0 * bytes / (ms * 1e6);
  }
  {
    const int n = 8192;
    DeviceBuffer a(size_t(n) * n * 2), w(size_t(n) * n * 2), c(size_t(n) * n * 2);
    fillRandom(a.get(), int64_t(n) * n, 2, stream);
    fillRandom(w.get(), int64_t(n) * n, 3, stream);
    CUDA_CHECK(gemmPrepare());
    GemmParams p;
    p.a = a.get();
    p.w = w.get();
    p.c = c.get();
    p.lda = p.ldw = p.ldc = n;
    p.M = p.N = p.K = n;
    p.out = GemmOut::Half;
    p.dtype = DType::BF16;
    const double ms = medianMs(stream, 10, [&] { CUDA_CHECK(gemm(p, stream)); });
    result.gemm_tflops = 2.0 * n * n * double(n) / (ms * 1e9);
  }
  return result;
}

std::vector<AttentionTiming> measureAttention(int device, const std::vector<int>& seqlens, int tokens, int heads) {
  CUDA_CHECK(cudaSetDevice(device));
  StreamGuard guard;
  cudaStream_t stream = guard.stream;
  const int head_dim = 128;
  const int64_t elements = int64_t(tokens) * heads * head_dim;
  DeviceBuffer q(elements * 2), k(elements * 2), v(elements * 2), o(elements * 2), slopes(heads * sizeof(float));
  fillRandom(q.get(), elements, 4, stream);
  fillRandom(k.get(), elements, 5, stream);
  fillRandom(v.get(), elements, 6, stream);
  std::vector<float> host_slopes(heads);
  for (int h = 0; h < heads; h++) host_slopes[h] = std::exp2(-8.f * (h + 1) / heads);
  CUDA_CHECK(cudaMemcpyAsync(slopes.get(), host_slopes.data(), heads * sizeof(float), cudaMemcpyHostToDevice, stream));

  std::vector<AttentionTiming> out;
  for (int seqlen : seqlens) {
    FlashAttentionParams p{};
    p.q = q.get();
    p.k = k.get();
    p.v = v.get();
    p.o = o.get();
    const int64_t row = int64_t(heads) * head_dim, batch_stride = row * seqlen;
    p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = p.o_batch_stride = batch_stride;
    p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = row;
    p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = head_dim;
    p.batch = std::max(1, tokens / seqlen);
    p.n_heads = heads;
    p.seqlen_q = p.seqlen_k = seqlen;
    p.head_dim = head_dim;
    p.softmax_scale = 1.f / std::sqrt(float(head_dim));
    p.alibi_slopes = slopes.as<float>();
    p.causal = true;
    p.dtype = AttnDType::BF16;
    const double ms = medianMs(stream, 20, [&] { CUDA_CHECK(flash_attention_prefill(p, stream)); });
    const double flops = 4.0 * p.batch * heads * double(seqlen) * seqlen * head_dim / 2;
    out.push_back({seqlen, p.batch, ms, flops / (ms * 1e9)});
  }
  return out;
}

}  // namespace flashmpt
