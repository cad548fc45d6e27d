#include "csrc/binding/addon_bench.h"

#include <vector>

#include "csrc/binding/napi_util.h"
#include "csrc/binding/promise_worker.h"
#include "csrc/runtime/microbench.h"

namespace flashmpt::binding {
namespace {

class CeilingsWorker final : public PromiseWorker {
 public:
  CeilingsWorker(Napi::Env env, int device) : PromiseWorker(env, "flash-mpt:measureCeilings"), device_(device) {}

 protected:
  void run() override { ceilings_ = measureCeilings(device_); }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Object::New(env);
    out.Set("copyGBs", ceilings_.copy_gb_s);
    out.Set("gemmTflops", ceilings_.gemm_tflops);
    return out;
  }

 private:
  int device_;
  Ceilings ceilings_;
};

class AttentionWorker final : public PromiseWorker {
 public:
  AttentionWorker(Napi::Env env, int device, std::vector<int> seqlens, int tokens, int heads)
      : PromiseWorker(env, "flash-mpt:measureAttention"), device_(device), seqlens_(std::move(seqlens)), tokens_(tokens), heads_(heads) {}

 protected:
  void run() override { timings_ = measureAttention(device_, seqlens_, tokens_, heads_); }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Array::New(env, timings_.size());
    for (size_t i = 0; i < timings_.size(); i++) {
      auto row = Napi::Object::New(env);
      row.Set("seqLen", timings_[i].seqlen);
      row.Set("batch", timings_[i].batch);
      row.Set("ms", timings_[i].ms);
      row.Set("tflops", timings_[i].tflops);
      out.Set(uint32_t(i), row);
    }
    return out;
  }

 private:
  int device_;
  std::vector<int> seqlens_;
  int tokens_, heads_;
  std::vector<AttentionTiming> timings_;
};

// measureCeilings(device) → Promise<{ copyGBs, gemmTflops }>
Napi::Value MeasureCeilings(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    auto* worker = new CeilingsWorker(info.Env(), int(integerArg(info[0], "device", 0, 1023)));
    worker->Queue();
    return Napi::Value(worker->promise());
  });
}

// measureAttention(device, seqLens, tokens, heads) → Promise<Array<{ seqLen, batch, ms, tflops }>>
Napi::Value MeasureAttention(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    const int device = int(integerArg(info[0], "device", 0, 1023));
    auto list = objectArg(info[1], "seqLens").As<Napi::Array>();
    std::vector<int> seqlens;
    for (uint32_t i = 0; i < list.Length(); i++) seqlens.push_back(int(integerArg(list.Get(i), "seqLens[i]", 1, 1 << 20)));
    const int tokens = int(integerArg(info[2], "tokens", 1, 1 << 24));
    const int heads = int(integerArg(info[3], "heads", 1, 1024));
    auto* worker = new AttentionWorker(info.Env(), device, std::move(seqlens), tokens, heads);
    worker->Queue();
    return Napi::Value(worker->promise());
  });
}

}  // namespace

void AddonBench::Init(Napi::Env env, Napi::Object exports) {
  exports.Set("measureCeilings", Napi::Function::New(env, MeasureCeilings, "measureCeilings"));
  exports.Set("measureAttention", Napi::Function::New(env, MeasureAttention, "measureAttention"));
}

}  // namespace flashmpt::binding
