// Engine timing harness (not part of the addon): the 1B-shape model with seeded random weights made on the
// GPU, timed through the Engine interface with no JS in the loop, next to the copy-bandwidth floor.
//   prefill: median ms of forward() over a fresh sequence at 128 / 512 / 2048 tokens, TFLOP/s and MFU against
//            a GEMM rate given as argv[1] (TFLOP/s measured in the same run; 0 to skip MFU);
//   decode:  ms per token at batch 1 (forward of one token: the CUDA-graph path) and tokens/s for larger batches
//            (a decodeGreedy chain of 128 steps: the serving engine's greedy path, no logits copied out), after a
//            prompt of 32 tokens per sequence; the batch-1 figure as a multiple of weight bytes ÷ copy bandwidth.
//            The first timed step of each batch runs between cudaProfilerStart and cudaProfilerStop, so
//            `ncu --profile-from-start off` sees one step's kernels.
// Usage: engine_bench <GEMM TFLOP/s> [BATCH[:PROMPT]...: decode only, e.g. `engine_bench 0 64:128` under ncu]
//        engine_bench <GEMM TFLOP/s> prefill:N   (one prefill length only, its last run profiled)
// Built from the addon's object files plus this file (see bench/RESULTS-engine.md for the command).
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "csrc/engine/engine.h"
#include "csrc/runtime/errors.h"

using namespace flashmpt;

namespace {

double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double copyBandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) std::exit(2);
  cudaMemset(a, 1, bytes);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> ms;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(e0);
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 2) ms.push_back(t);
  }
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (median(ms) * 1e-3);
}

ModelConfig seedModel() {
  ModelConfig c;
  c.d_model = 2048;
  c.n_heads = 16;
  c.n_layers = 24;
  c.d_ff = 8192;
  c.vocab_size = 50432;
  c.max_seq_len = 2048;
  c.qk_ln = true;
  c.softmax_scale = 1.f / std::sqrt(128.f);
  for (int h = 1; h <= 16; ++h) c.alibi_slopes.push_back(std::pow(2.f, -0.5f * h));
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const double gemmTflops = argc > 1 ? std::atof(argv[1]) : 0;
  // Further arguments: decode only, no prefill — BATCH or BATCH:PROMPT (prompt tokens per sequence, default 32).
  // Or `prefill:N`: prefill of N tokens only, its last timed forward between cudaProfilerStart and Stop (for
  // `ncu --profile-from-start off` or `nsys profile --capture-range=cudaProfilerApi`).
  std::vector<std::pair<int, int>> batches;  // (batch, prompt tokens)
  std::vector<int> prefillTokens = {128, 512, 2048};
  bool profilePrefill = false;
  for (int i = 2; i < argc; ++i) {
    const char* colon = std::strchr(argv[i], ':');
    if (!std::strncmp(argv[i], "prefill:", 8)) {
      prefillTokens = {std::atoi(argv[i] + 8)};
      profilePrefill = true;
    } else {
      batches.emplace_back(std::atoi(argv[i]), colon ? std::atoi(colon + 1) : 32);
    }
  }
  const bool prefill = batches.empty();
  if (prefill && !profilePrefill) batches = {{1, 32}, {8, 32}, {16, 32}, {64, 32}};
  try {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return 2;
    const double bw = copyBandwidth();
    EngineOptions o;
    o.config = seedModel();
    o.random_weights = true;
    o.seed = 1234;
    o.device = 0;
    o.kv_tokens = 2048 + 256;
    o.max_sequences = 64;
    const double t0 = nowMs();
    auto engine = createCudaEngine(o);
    std::printf("device: %s; copy %.0f GB/s; 1B model made in %.0f ms; weights %.3f GB, KV %.2f GB, workspace %.1f MB\n",
                prop.name, bw / 1e9, nowMs() - t0, engine->weightBytes() / 1e9, engine->kvCacheBytes() / 1e9,
                engine->workspaceBytes() / 1e6);
    const ModelConfig& c = o.config;
    const double bodyParams = double(c.n_layers) * (4.0 * c.d_model * c.d_model + 2.0 * c.d_model * c.d_ff);
    std::vector<float> logits(size_t(64) * c.vocab_size);

    if (prefill) std::printf("\n| prefill tokens | ms | tokens/s | TFLOP/s | MFU |\n| ---: | ---: | ---: | ---: | ---: |\n");
    for (int n : prefill ? prefillTokens : std::vector<int>{}) {
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) ids[size_t(i)] = (i * 7919 + 13) % c.vocab_size;
      std::vector<double> ms;
      for (int r = 0; r < 6; ++r) {
        const int seq = engine->createSequence();
        const bool profiled = profilePrefill && r == 5;
        if (profiled) cudaProfilerStart();
        const double s = nowMs();
        engine->forward(seq, ids.data(), n, false, logits.data());
        if (r > 0) ms.push_back(nowMs() - s);
        if (profiled) cudaProfilerStop();
        engine->releaseSequence(seq);
      }
      const double t = median(ms);
      const double flops = 2.0 * bodyParams * n + 2.0 * c.vocab_size * c.d_model +
                           c.n_layers * 4.0 * c.n_heads * double(n) * n * (c.d_model / c.n_heads) * 0.5;
      const double tflops = flops / (t * 1e9);
      std::printf("| %d | %.2f | %.0f | %.1f | %s |\n", n, t, n * 1e3 / t, tflops,
                  gemmTflops > 0 ? (std::to_string(int(std::round(100 * tflops / gemmTflops))) + "%").c_str() : "-");
    }

    const double floorMs = engine->weightBytes() / bw * 1e3;
    std::printf("\n| decode batch | prompt | ms/step | tokens/s | ms/step ÷ weight floor (%.3f ms) |\n"
                "| ---: | ---: | ---: | ---: | ---: |\n", floorMs);
    const int steps = 128;
    for (const auto& [batchSize, promptSize] : batches) {
      const int batch = batchSize, promptTokens = promptSize;  // captured by the lambda below
      std::vector<int> seqs;
      std::vector<int32_t> prompt(static_cast<size_t>(promptTokens)), next(static_cast<size_t>(batch));
      std::vector<int32_t> picks(size_t(steps) * size_t(batch));
      for (int i = 0; i < promptTokens; ++i) prompt[size_t(i)] = (i * 7919 + 13) % c.vocab_size;
      for (int b = 0; b < batch; ++b) {
        seqs.push_back(engine->createSequence());
        engine->forward(seqs.back(), prompt.data(), promptTokens, false, logits.data());
        next[size_t(b)] = 42 + b;
      }
      auto run = [&](int n) {
        if (batch == 1) {
          for (int i = 0; i < n; ++i) engine->forward(seqs[0], next.data(), 1, false, logits.data());
        } else {
          engine->decodeGreedy(seqs.data(), next.data(), batch, n, c.vocab_size, -1, picks.data());
        }
      };
      run(2);  // eager, capture
      cudaProfilerStart();
      run(1);
      cudaProfilerStop();
      const double s = nowMs();
      run(steps);
      const double t = (nowMs() - s) / steps;
      std::printf("| %d | %d | %.3f | %.0f | %.2f |\n", batch, promptTokens, t, batch * 1e3 / t, t / floorMs);
      for (int seq : seqs) engine->releaseSequence(seq);
    }
  } catch (const FlashError& e) {
    std::printf("FlashError [%s] %s\n", e.code.c_str(), e.what());
    return 1;
  }
  return 0;
}
