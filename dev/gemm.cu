// GEMM harness (not part of the addon): validates every prefill kernel the device runs (tiled mma.sync, and wgmma
// on compute capability 9.0 with an sm_90a build) and the decode kernels (skinny, and there the wgmma decode layout,
// "wgmma-dec") against a float64 CPU reference over shapes with ragged edges and every epilogue, and their batch
// invariance, then times the prefill kernels side by side on the 1B model's shapes (twice: the spread is the noise)
// and the decode weight stream through each decode kernel next to the measured device-to-device copy bandwidth.
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -I. dev/gemm.cu \
//        kernels/gemm/*.cu kernels/random/random_init.cu -o gemm && ./gemm
// Prints one line per check and a table per timing; exits non-zero when a check fails.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "kernels/random/random_init.h"

#include "dev/dev_check.h"

using namespace flashmpt;


namespace {

uint16_t toHalfBits(float v, DType t) {
  if (t == DType::BF16) {
    __nv_bfloat16 b = __float2bfloat16_rn(v);
    return *reinterpret_cast<uint16_t*>(&b);
  }
  __half h = __float2half_rn(v);
  return *reinterpret_cast<uint16_t*>(&h);
}

float fromHalfBits(uint16_t bits, DType t) {
  if (t == DType::BF16) return __bfloat162float(*reinterpret_cast<__nv_bfloat16*>(&bits));
  return __half2float(*reinterpret_cast<__half*>(&bits));
}

const char* outName(GemmOut o) {
  switch (o) {
    case GemmOut::Half: return "half";
    case GemmOut::HalfGelu: return "half+gelu";
    case GemmOut::Float: return "f32";
    case GemmOut::AddFloat: return "f32+=";
  }
  return "?";
}

// Rounded random values (their float images, when asked for, feed the reference, so only the GEMM's own error
// remains).
std::vector<uint16_t> randomHalf(size_t n, DType t, std::mt19937& rng, float scale, std::vector<float>* image) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<uint16_t> bits(n);
  if (image) image->resize(n);
  for (size_t i = 0; i < n; ++i) {
    bits[i] = toHalfBits(u(rng), t);
    if (image) (*image)[i] = fromHalfBits(bits[i], t);
  }
  return bits;
}

int failures = 0;

// A split-K workspace as the engine gives one (kernels/gemm/gemm.h) of `floats` partial sums.
struct SplitWorkspace {
  float* partials = nullptr;
  unsigned* counters = nullptr;
  size_t floats = 0;
  static constexpr int kCounters = 4096;
  explicit SplitWorkspace(size_t floats) : floats(floats) {
    CHECK(cudaMalloc(&partials, floats * sizeof(float)));
    CHECK(cudaMalloc(&counters, kCounters * sizeof(unsigned)));
    CHECK(cudaMemset(counters, 0, kCounters * sizeof(unsigned)));
  }
  ~SplitWorkspace() {
    cudaFree(partials);
    cudaFree(counters);
  }
  void attach(GemmParams& p) const {
    p.split_partials = partials;
    p.split_partial_floats = floats;
    p.split_counters = counters;
    p.split_counter_count = kCounters;
  }
};

struct Kernel {
  const char* name;
  cudaError_t (*run)(const GemmParams&, cudaStream_t);
};

// A GEMM over contiguous row-major buffers: a [M, K], w [N, K], c [M, N].
GemmParams contiguousParams(const void* a, const void* w, void* c, int M, int N, int K, GemmOut out) {
  GemmParams p;
  p.a = a;
  p.w = w;
  p.c = c;
  p.lda = p.ldw = K;
  p.ldc = N;
  p.M = M;
  p.N = N;
  p.K = K;
  p.out = out;
  return p;
}

// A GEMM's device operands: a and w uploaded from their bits, c of cBytes (unset); freed with the object.
struct DeviceOperands {
  void *a = nullptr, *w = nullptr, *c = nullptr;
  DeviceOperands(const std::vector<uint16_t>& aBits, const std::vector<uint16_t>& wBits, size_t cBytes) {
    CHECK(cudaMalloc(&a, aBits.size() * 2));
    CHECK(cudaMalloc(&w, wBits.size() * 2));
    CHECK(cudaMalloc(&c, cBytes));
    CHECK(cudaMemcpy(a, aBits.data(), aBits.size() * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(w, wBits.data(), wBits.size() * 2, cudaMemcpyHostToDevice));
  }
  DeviceOperands(const DeviceOperands&) = delete;
  DeviceOperands& operator=(const DeviceOperands&) = delete;
  ~DeviceOperands() {
    cudaFree(a);
    cudaFree(w);
    cudaFree(c);
  }
};

// The kernels that serve M rows on this device (gemm() picks one of them; row-invariant calls take wgmma, "wgmma-ri",
// at every M; decode rows may take "wgmma-dec").
std::vector<Kernel> kernelsFor(int M) {
  std::vector<Kernel> k{M <= kSkinnyMaxRows ? Kernel{"skinny", gemmSkinny} : Kernel{"tiled", gemmTiled}};
  if (!gemmWgmmaReady()) return k;
  if (M > kSkinnyMaxRows) k.push_back({"wgmma", gemmWgmma});
  if (M <= kSkinnyMaxRows) k.push_back({"wgmma-dec", gemmWgmmaDecode});
  k.push_back({"wgmma-ri", [](const GemmParams& p, cudaStream_t stream) {
                 GemmParams invariant = p;
                 invariant.row_invariant = true;
                 return gemmWgmma(invariant, stream);
               }});
  return k;
}

struct Shape {
  const char* name;
  int N, K;
  GemmOut out;
};
const Shape kShapes[] = {{"Wqkv", 6144, 2048, GemmOut::Half},
                         {"out_proj", 2048, 2048, GemmOut::AddFloat},
                         {"mlp_up", 8192, 2048, GemmOut::HalfGelu},
                         {"mlp_down", 2048, 8192, GemmOut::AddFloat},
                         {"lm_head", 50432, 2048, GemmOut::Float}};
constexpr int kLayerShapes = 4;  // kShapes before the LM head

// The engine's split workspace (csrc/engine/cuda/forward.cu) for the 1B shape's residual GEMMs.
size_t engineSplitFloats() {
  int sms = 0;
  CHECK(multiprocessorCount(&sms));
  return gemmSplitWorkspace(2048, 8192, sms).partial_floats;
}

void check(int M, int N, int K, DType t, GemmOut out, bool bias, std::mt19937& rng) {
  std::vector<float> a, w, biasValues(N), c0(size_t(M) * N);
  const std::vector<uint16_t> aBits = randomHalf(size_t(M) * K, t, rng, 1.f, &a);
  const std::vector<uint16_t> wBits = randomHalf(size_t(N) * K, t, rng, 1.f / std::sqrt(float(K)), &w);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& b : biasValues) b = u(rng);
  for (float& c : c0) c = u(rng);
  const float alpha = out == GemmOut::Float ? 0.5f : 1.f;

  std::vector<double> ref(size_t(M) * N);
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) acc += double(a[size_t(m) * K + k]) * w[size_t(n) * K + k];
      double v = alpha * acc + (bias ? biasValues[n] : 0.0);
      if (out == GemmOut::HalfGelu) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
      if (out == GemmOut::AddFloat) v += c0[size_t(m) * N + n];
      ref[size_t(m) * N + n] = v;
    }
  }

  const bool half = out == GemmOut::Half || out == GemmOut::HalfGelu;
  const size_t cBytes = size_t(M) * N * (half ? 2 : 4);
  const DeviceOperands d(aBits, wBits, cBytes);
  void* const dC = d.c;
  float* dBias;
  CHECK(cudaMalloc(&dBias, size_t(N) * 4));
  CHECK(cudaMemcpy(dBias, biasValues.data(), size_t(N) * 4, cudaMemcpyHostToDevice));
  SplitWorkspace split(32 * size_t(M) * N);
  GemmParams p = contiguousParams(d.a, d.w, dC, M, N, K, out);
  split.attach(p);
  p.alpha = alpha;
  p.bias = bias ? dBias : nullptr;
  p.dtype = t;
  for (const Kernel& kernel : kernelsFor(M)) {
    if (out == GemmOut::AddFloat) {
      CHECK(cudaMemcpy(dC, c0.data(), cBytes, cudaMemcpyHostToDevice));
    } else {
      CHECK(cudaMemset(dC, 0xff, cBytes));  // NaN poison: an unwritten element fails the check
    }
    CHECK(kernel.run(p, nullptr));
    CHECK(cudaDeviceSynchronize());

    std::vector<float> got(size_t(M) * N);
    if (half) {
      std::vector<uint16_t> bits(size_t(M) * N);
      CHECK(cudaMemcpy(bits.data(), dC, cBytes, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < bits.size(); ++i) got[i] = fromHalfBits(bits[i], t);
    } else {
      CHECK(cudaMemcpy(got.data(), dC, cBytes, cudaMemcpyDeviceToHost));
    }
    double errSq = 0, refSq = 0, maxErr = 0;
    bool finite = true;
    for (size_t i = 0; i < got.size(); ++i) {
      const double g = got[i], v = ref[i];
      finite = finite && std::isfinite(g);
      errSq += (g - v) * (g - v);
      refSq += v * v;
      maxErr = std::max(maxErr, std::fabs(g - v));
    }
    const double rel = std::sqrt(errSq / std::max(refSq, 1e-30));
    // Half outputs carry one rounding (2^-8 relative for bf16, 2^-11 for f16); fp32 outputs only summation order.
    // fp32 rounding of a K-long sum grows as √K (1e-5 up to K = 2048).
    const double limit = half ? (t == DType::BF16 ? 6e-3 : 1e-3) : std::max(1e-5, 2.2e-7 * std::sqrt(double(K)));
    const bool ok = finite && rel <= limit;
    if (!ok) ++failures;
    std::printf("%s %-6s %-5s M=%-5d N=%-6d K=%-5d %-9s bias=%d  rel_l2=%.2e max_abs=%.2e  (limit %.1e)\n",
                ok ? "PASS" : "FAIL", kernel.name, t == DType::BF16 ? "bf16" : "f16", M, N, K, outName(out), int(bias),
                rel, maxErr, limit);
  }
  CHECK(cudaFree(dBias));
}

// Batch invariance of each decode kernel: row r of an M-row product is bitwise the same for every M ≥ r + 1
// (the engine's decode step then gives a sequence the same logits alone or in a batch), and a repeated launch
// gives the same bits (no order-dependent atomics), for the 1B model's decode shapes and epilogues.
void checkBatchInvariance(const Kernel& kernel, DType t, std::mt19937& rng) {
  for (const Shape& s : kShapes) {
    const int maxM = kSkinnyMaxRows;
    const std::vector<uint16_t> aBits = randomHalf(size_t(maxM) * s.K, t, rng, 1.f, nullptr);
    const std::vector<uint16_t> wBits = randomHalf(size_t(s.N) * s.K, t, rng, 1.f / std::sqrt(float(s.K)), nullptr);
    const bool half = s.out == GemmOut::Half || s.out == GemmOut::HalfGelu;
    const size_t elem = half ? 2 : 4, cBytes = size_t(maxM) * s.N * elem;
    const DeviceOperands d(aBits, wBits, cBytes);
    SplitWorkspace split(32 * size_t(maxM) * s.N);
    GemmParams p = contiguousParams(d.a, d.w, d.c, 0, s.N, s.K, s.out);
    split.attach(p);
    p.dtype = t;
    // An AddFloat output starts from zeros each time, so its bits are comparable.
    auto run = [&](int M) {
      CHECK(cudaMemset(d.c, 0, cBytes));
      p.M = M;
      CHECK(kernel.run(p, nullptr));
      CHECK(cudaDeviceSynchronize());
      std::vector<uint8_t> out(size_t(M) * s.N * elem);
      CHECK(cudaMemcpy(out.data(), d.c, out.size(), cudaMemcpyDeviceToHost));
      return out;
    };
    const std::vector<uint8_t> full = run(maxM);
    bool ok = run(maxM) == full;  // reproducible
    for (int M : {1, 2, 5, 8, 9, 16, 17, 33, 63}) {
      const std::vector<uint8_t> part = run(M);
      ok = ok && std::equal(part.begin(), part.end(), full.begin());
    }
    if (!ok) ++failures;
    std::printf("%s batch invariance %-9s %-8s %-5s N=%-6d K=%-5d: rows of M = 1 … 64 bitwise equal, repeat equal\n",
                ok ? "PASS" : "FAIL", kernel.name, s.name, t == DType::BF16 ? "bf16" : "f16", s.N, s.K);
  }
}

// Row-invariant calls (GemmParams::row_invariant, prompts sharing a pass) through gemm(): rows [r0, r0 + M) of an M-row product are bitwise those rows of
// a 2048-row product, whatever M (the wgmma tile, K parts over blocks or folded in one) and whatever the rows'
// place in their tiles, for the 1B model's prefill shapes and epilogues; an AddFloat output starts from the same
// residual values. The engine then prefills a prompt beside others with its solo bits.
void checkPromptInvariance(DType t, std::mt19937& rng) {
  if (!gemmRowInvariance(t)) {
    std::printf("SKIP prompt-row invariance (%s): this device's GEMMs do not promise it\n", t == DType::BF16 ? "bf16" : "f16");
    return;
  }
  const int maxM = 2048;
  for (int i = 0; i < kLayerShapes; ++i) {
    const Shape& s = kShapes[i];
    const std::vector<uint16_t> aBits = randomHalf(size_t(maxM) * s.K, t, rng, 1.f, nullptr);
    const std::vector<uint16_t> wBits = randomHalf(size_t(s.N) * s.K, t, rng, 1.f / std::sqrt(float(s.K)), nullptr);
    const bool half = s.out == GemmOut::Half || s.out == GemmOut::HalfGelu;
    const size_t elem = half ? 2 : 4, rowBytes = size_t(s.N) * elem, cBytes = size_t(maxM) * rowBytes;
    std::vector<uint8_t> residual(cBytes);
    for (size_t i = 0; i < cBytes / 4; ++i) {
      const float v = std::uniform_real_distribution<float>(-1.f, 1.f)(rng);
      std::memcpy(residual.data() + 4 * i, &v, 4);
    }
    const DeviceOperands d(aBits, wBits, cBytes);
    SplitWorkspace split(engineSplitFloats());
    auto run = [&](int r0, int M) {
      CHECK(cudaMemcpy(d.c, residual.data(), cBytes, cudaMemcpyHostToDevice));
      GemmParams p = contiguousParams(static_cast<uint16_t*>(d.a) + size_t(r0) * s.K, d.w,
                                      static_cast<uint8_t*>(d.c) + r0 * rowBytes, M, s.N, s.K, s.out);
      split.attach(p);
      p.dtype = t;
      p.row_invariant = true;
      CHECK(gemm(p, nullptr));
      CHECK(cudaDeviceSynchronize());
      std::vector<uint8_t> out(size_t(M) * rowBytes);
      CHECK(cudaMemcpy(out.data(), static_cast<uint8_t*>(d.c) + r0 * rowBytes, out.size(), cudaMemcpyDeviceToHost));
      return out;
    };
    const std::vector<uint8_t> full = run(0, maxM);
    bool ok = run(0, maxM) == full;  // reproducible
    std::string parted;
    for (const auto& [r0, M] : std::vector<std::pair<int, int>>{
             {0, 1}, {5, 1}, {3, 17}, {64, 64}, {100, 100}, {7, 128}, {1000, 256}, {37, 300}, {512, 1024}, {1, 2047}}) {
      const std::vector<uint8_t> part = run(r0, M);
      if (!std::equal(part.begin(), part.end(), full.begin() + r0 * rowBytes)) {
        ok = false;
        parted += " " + std::to_string(r0) + "+" + std::to_string(M);
      }
    }
    if (!ok) ++failures;
    std::printf("%s prompt-row invariance %-8s %-5s N=%-6d K=%-5d: rows of M = 1 … 2047 at any offset bitwise those of "
                "M = 2048, repeat equal%s%s\n",
                ok ? "PASS" : "FAIL", s.name, t == DType::BF16 ? "bf16" : "f16", s.N, s.K,
                parted.empty() ? "" : "; differ at r0+M:", parted.c_str());
  }
}

double copyBandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *src, *dst;
  CHECK(cudaMalloc(&src, bytes));
  CHECK(cudaMalloc(&dst, bytes));
  CHECK(cudaMemset(src, 1, bytes));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 12; ++i) {
    CHECK(cudaEventRecord(e0));
    CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float t;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  CHECK(cudaFree(src));
  CHECK(cudaFree(dst));
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3);  // bytes read + written per second
}

// Median time (ms) of `launch` over a CUDA graph of `reps` back-to-back launches.
template <class F>
float timeGraph(F&& launch, int reps) {
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  launch(s);
  CHECK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  cudaGraphExec_t exec;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < reps; ++i) launch(s);
  CHECK(cudaStreamEndCapture(s, &g));
  CHECK(cudaGraphInstantiate(&exec, g, 0));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 7; ++i) {
    CHECK(cudaEventRecord(e0, s));
    CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaEventRecord(e1, s));
    CHECK(cudaEventSynchronize(e1));
    float t;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 2) ms.push_back(t / reps);
  }
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(g));
  CHECK(cudaStreamDestroy(s));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Device buffer of n random bf16 values N(0, 0.05²), made on the device (timing inputs: never zeros).
void* randomDevice(size_t n, std::mt19937& rng) {
  void* d;
  CHECK(cudaMalloc(&d, n * 2));
  RandomInitParams p;
  p.out = d;
  p.n = int64_t(n);
  p.stream = rng();
  p.stddev = 0.05f;
  p.dtype = DType::BF16;
  CHECK(randomInit(p, nullptr));
  return d;
}

// Each prefill kernel on each layer GEMM, the weights rotating over 4 copies (so mlp_up's 32 MB is not served
// from L2 on every call), the activations and outputs distinct per call as in the engine.
void timePrefill(std::mt19937& rng) {
  const int maxM = 2048, copies = 4;
  const std::vector<Kernel> kernels = kernelsFor(maxM);
  std::printf("\nprefill GEMMs (bf16), 1B shapes, TFLOP/s per kernel\n| M | GEMM |");
  for (const Kernel& k : kernels) std::printf(" %s ms | %s TFLOP/s |", k.name, k.name);
  std::printf("\n| ---: | --- |");
  for (size_t i = 0; i < kernels.size(); ++i) std::printf(" ---: | ---: |");
  std::printf("\n");
  void* a = randomDevice(size_t(maxM) * 8192, rng);
  void* c;
  CHECK(cudaMalloc(&c, size_t(maxM) * 8192 * 4));
  CHECK(cudaMemset(c, 0, size_t(maxM) * 8192 * 4));
  // The engine's split-K workspace, so the residual GEMMs of few rows split over K as they do there.
  SplitWorkspace split(engineSplitFloats());
  for (int M : {128, 512, 2048}) {
    std::vector<double> ms(kernels.size(), 0.0);
    double flops = 0;
    for (int i = 0; i < kLayerShapes; ++i) {
      const Shape& s = kShapes[i];
      std::vector<void*> w;
      for (int i = 0; i < copies; ++i) w.push_back(randomDevice(size_t(s.N) * s.K, rng));
      const double f = 2.0 * M * s.N * s.K;
      flops += f;
      std::printf("| %d | %s |", M, s.name);
      for (size_t k = 0; k < kernels.size(); ++k) {
        const float t = timeGraph(
            [&](cudaStream_t st) {
              for (int i = 0; i < copies; ++i) {
                GemmParams p = contiguousParams(a, w[size_t(i)], c, M, s.N, s.K, s.out);
                split.attach(p);
                CHECK(kernels[k].run(p, st));
              }
            },
            5) / copies;
        std::printf(" %.4f | %.1f |", t, f / (t * 1e9));
        ms[k] += t;
      }
      std::printf("\n");
      for (void* x : w) CHECK(cudaFree(x));
    }
    std::printf("| %d | layer total |", M);
    for (double t : ms) std::printf(" %.4f | %.1f |", t, flops / (t * 1e9));
    std::printf("\n");
  }
  CHECK(cudaFree(a));
  CHECK(cudaFree(c));
}

// The decode step's weight stream without attention or norms: 24 layers of the four GEMVs plus the LM head,
// over distinct weights (2.6 GB, far past L2), as one graph with programmatic dependent launches, as the engine
// runs them, through each decode kernel the device has (kernelsFor). Its floor is weight bytes ÷ copy bandwidth.
void timeDecodeChain(double copyBw, std::mt19937& rng) {
  const int layers = 24;
  const Shape& head = kShapes[kLayerShapes];
  std::vector<void*> weights;
  size_t weightBytes = 0;
  for (int l = 0; l < layers; ++l) {
    for (int i = 0; i < kLayerShapes; ++i) {
      weights.push_back(randomDevice(size_t(kShapes[i].N) * kShapes[i].K, rng));
      weightBytes += size_t(kShapes[i].N) * kShapes[i].K * 2;
    }
  }
  void* headWeights = randomDevice(size_t(head.N) * head.K, rng);
  weightBytes += size_t(head.N) * head.K * 2;
  void* act = randomDevice(size_t(64) * 8192, rng);
  void* out;
  CHECK(cudaMalloc(&out, size_t(64) * head.N * 4));
  CHECK(cudaMemset(out, 0, size_t(64) * head.N * 4));
  const SplitWorkspace split(engineSplitFloats());
  auto launch = [&](const Kernel& kernel, const Shape& s, const void* w, int rows, cudaStream_t st) {
    GemmParams p = contiguousParams(act, w, out, rows, s.N, s.K, s.out);
    split.attach(p);
    p.pdl = true;
    CHECK(kernel.run(p, st));
  };

  const std::vector<Kernel> kernels = kernelsFor(kSkinnyMaxRows);
  std::printf("\ndecode weight stream (bf16): 24 layers × {Wqkv, out_proj, mlp_up, mlp_down} + LM head, %.3f GB, "
              "floor %.3f ms at %.0f GB/s copy; ms (fraction of copy bandwidth)\n| rows |",
              weightBytes / 1e9, weightBytes / copyBw * 1e3, copyBw / 1e9);
  for (const Kernel& k : kernels) std::printf(" %s |", k.name);
  std::printf("\n| ---: |");
  for (size_t i = 0; i < kernels.size(); ++i) std::printf(" ---: |");
  std::printf("\n");
  for (int rows : {1, 2, 4, 8, 16, 32, 64}) {
    std::printf("| %d |", rows);
    for (const Kernel& k : kernels) {
      const float t = timeGraph(
          [&](cudaStream_t st) {
            for (int l = 0; l < layers; ++l) {
              for (int i = 0; i < kLayerShapes; ++i) {
                launch(k, kShapes[i], weights[size_t(l) * kLayerShapes + i], rows, st);
              }
            }
            launch(k, head, headWeights, rows, st);
          },
          3);
      std::printf(" %.4f (%.2f) |", t, weightBytes / (t * 1e-3) / copyBw);
    }
    std::printf("\n");
  }
  std::printf("\nsingle decode GEMMs, each over 8 rotating weight copies (the LM head over one): us (GB/s)\n"
              "| GEMM | rows |");
  for (const Kernel& k : kernels) std::printf(" %s |", k.name);
  std::printf("\n| --- | ---: |");
  for (size_t i = 0; i < kernels.size(); ++i) std::printf(" ---: |");
  std::printf("\n");
  for (int i = 0; i <= kLayerShapes; ++i) {
    const Shape& s = kShapes[i];
    for (int rows : {1, 8, 32, 64}) {
      std::printf("| %s | %d |", s.name, rows);
      for (const Kernel& k : kernels) {
        const float t = timeGraph(
            [&](cudaStream_t st) {
              for (int l = 0; l < 8; ++l) {
                launch(k, s, i == kLayerShapes ? headWeights : weights[size_t(l) * kLayerShapes + i], rows, st);
              }
            },
            4) / 8;
        std::printf(" %.2f (%.0f) |", t * 1e3, double(s.N) * s.K * 2 / (t * 1e-3) / 1e9);
      }
      std::printf("\n");
    }
  }
  for (void* w : weights) CHECK(cudaFree(w));
  CHECK(cudaFree(headWeights));
  CHECK(cudaFree(act));
  CHECK(cudaFree(out));
}

}  // namespace

int main(int argc, char** argv) {
  // `gemm decode`: only the decode kernels' checks and timings.
  const bool decodeOnly = argc > 1 && std::strcmp(argv[1], "decode") == 0;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  CHECK(gemmPrepare());
  std::mt19937 rng(12345);
  std::printf("wgmma kernel: %s\n", gemmWgmmaReady() ? "yes (sm_90a image on a 9.0 device)" : "no");
  // Skinny (M ≤ 64, split over blocks for long K with f32+=); tiled 64×128 and 128×128 (from 1024×3000 on 132 SMs);
  // wgmma 64×128 and 128×256 (1300×3000, 2048×2048; its blocks walking several tiles and storing them by TMA at
  // 1999×2104 and 2100×4104, one tile a block where rows of 2101 or 4100 outputs are not 16-byte aligned),
  // its f32+= split over K when the grid is small (e.g. 100×256, 257×384, 96×520); ragged M, N and K (K under one
  // 64-wide k-tile, K % 64 ≠ 0) throughout.
  const int shapes[][3] = {{1, 777, 96},      {3, 50, 136},      {8, 2048, 2048},   {1, 520, 8192},   {13, 384, 256},
                           {33, 500, 128},    {40, 300, 1032},   {64, 1000, 264},   {65, 777, 96},    {100, 256, 768},
                           {130, 1001, 256},  {257, 384, 1032},  {1000, 640, 512},  {1024, 3000, 256}, {1300, 3000, 264},
                           {77, 130, 8},      {200, 72, 40},     {2048, 2048, 136}, {1999, 2101, 200}, {96, 520, 8192},
                           {200, 1000, 1104}, {300, 2048, 1104}, {1024, 1800, 600}, {2100, 4100, 72},
                           {1999, 2104, 200}, {2100, 4104, 72}};
  for (DType t : {DType::BF16, DType::F16}) {
    for (const auto& s : shapes) {
      if (decodeOnly && s[0] > kSkinnyMaxRows) continue;
      for (GemmOut out : {GemmOut::Half, GemmOut::HalfGelu, GemmOut::Float, GemmOut::AddFloat}) {
        check(s[0], s[1], s[2], t, out, out != GemmOut::Float, rng);
      }
    }
    for (const Kernel& kernel : kernelsFor(kSkinnyMaxRows)) {
      if (std::strcmp(kernel.name, "wgmma-ri") != 0) checkBatchInvariance(kernel, t, rng);
    }
    if (!decodeOnly) checkPromptInvariance(t, rng);
  }
  const double bw = copyBandwidth();
  std::printf("\ndevice-to-device copy: %.0f GB/s (bytes read + written)\n", bw / 1e9);
  if (!decodeOnly) {
    timePrefill(rng);
    timePrefill(rng);
  }
  timeDecodeChain(bw, rng);
  std::printf("\n%s: %d check(s) failed\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
