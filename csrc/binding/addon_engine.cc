#include "csrc/binding/addon_engine.h"

#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "csrc/binding/napi_util.h"
#include "csrc/binding/promise_worker.h"
#include "csrc/runtime/errors.h"
#include "kernels/kv/paged_kv.h"

namespace flashmpt::binding {
namespace {

constexpr const char* kClassName = "Engine";
constexpr int64_t kMaxSafeInteger = (int64_t(1) << 53) - 1;
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

Napi::Promise rejected(Napi::Env env, std::exception_ptr error) {
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    std::rethrow_exception(error);
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  } catch (...) {
    deferred.Reject(Napi::Error::New(env, errorText(std::current_exception())).Value());
  }
  return deferred.Promise();
}

// Output memory of a worker, left uninitialized: the engine writes every element (zero-filling a 200 KB logits row
// cost ~50 µs of a decode step).
template <typename T>
struct HostArray {
  std::unique_ptr<T[]> data;
  size_t size = 0;
  T* allocate(size_t n) {
    data.reset(new T[n]);
    size = n;
    return data.get();
  }
};

// Results leave as a typed array over the worker's own storage: no copy, freed by the garbage collector.
template <typename T>
Napi::TypedArrayOf<T> toTypedArray(Napi::Env env, HostArray<T>&& values) {
  const size_t length = values.size;
  auto buffer = Napi::ArrayBuffer::New(env, values.data.get(), length * sizeof(T),
                                       [](Napi::Env, void* data) { delete[] static_cast<T*>(data); });
  values.data.release();
  return Napi::TypedArrayOf<T>::New(env, length, buffer, 0);
}

// A candidates call (decodeBatchCandidates, forwardPromptsCandidates): k and the sampleable vocabulary asked for, then
// each row's k candidates and log-sum-exp, handed to JS as { ids, logits, logSumExp }.
struct CandidateCall {
  int k = 0, sampleable_vocab = 0;
  HostArray<int32_t> ids;
  HostArray<float> logits, log_sum_exp;

  // The outputs for n rows.
  void allocate(size_t n) {
    ids.allocate(n * size_t(k));
    logits.allocate(n * size_t(k));
    log_sum_exp.allocate(n);
  }

  Napi::Object toObject(Napi::Env env) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("ids", toTypedArray(env, std::move(ids)));
    out.Set("logits", toTypedArray(env, std::move(logits)));
    out.Set("logSumExp", toTypedArray(env, std::move(log_sum_exp)));
    return out;
  }
};

// The sequences, concatenated token ids and lengths of whole prompts (forwardPrompts, forwardPromptsCandidates).
struct PromptInputs {
  std::vector<int> seqs;
  std::vector<int32_t> ids;
  std::vector<int64_t> lengths;
};

// A call on an engine. Holds the JS object so it is not collected meanwhile, and the shared state so a dispose()
// during the call frees the engine only when the last queued call has finished.
class EngineWorker : public PromiseWorker {
 public:
  EngineWorker(Napi::Env env, const char* name, std::shared_ptr<EngineState> state, const Napi::Object& self)
      : PromiseWorker(env, name), state_(std::move(state)), self_(Napi::Persistent(self)) {}

 protected:
  virtual void compute(Engine& engine) = 0;
  std::shared_ptr<EngineState> state_;

 private:
  void run() final {
    std::lock_guard<std::mutex> run_lock(state_->run_mutex);
    std::exception_ptr error;
    try {
      compute(*state_->engine);
    } catch (...) {
      error = std::current_exception();
    }
    std::unique_ptr<Engine> retired;
    {
      std::lock_guard<std::mutex> lock(state_->state_mutex);
      state_->memory = {state_->engine->weightBytes(), state_->engine->kvCacheBytes(),
                        state_->engine->workspaceBytes()};
      if (--state_->pending == 0 && state_->disposed) retired = std::move(state_->engine);
    }
    retired.reset();  // a dispose() that came during the call frees the engine here, off the JS thread
    if (error) std::rethrow_exception(error);
  }

  Napi::ObjectReference self_;
};

class ForwardWorker final : public EngineWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self, int seq,
                std::vector<int32_t> ids, bool all_logits)
      : EngineWorker(env, "flash-mpt:forward", std::move(state), self),
        seq_(seq),
        ids_(std::move(ids)),
        all_logits_(all_logits) {}

 private:
  void compute(Engine& engine) override {
    const size_t rows = all_logits_ ? ids_.size() : 1;
    engine.forward(seq_, ids_.data(), int64_t(ids_.size()), all_logits_, logits_.allocate(rows * size_t(state_->vocab_size)));
  }
  Napi::Value result(Napi::Env env) override { return toTypedArray(env, std::move(logits_)); }

  int seq_;
  std::vector<int32_t> ids_;
  bool all_logits_;
  HostArray<float> logits_;
};

class ForwardPromptsWorker final : public EngineWorker {
 public:
  ForwardPromptsWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self,
                       PromptInputs inputs)
      : EngineWorker(env, "flash-mpt:forwardPrompts", std::move(state), self), in_(std::move(inputs)) {}

 private:
  void compute(Engine& engine) override {
    engine.forwardPrompts(in_.seqs.data(), in_.ids.data(), in_.lengths.data(), int(in_.seqs.size()),
                          logits_.allocate(in_.seqs.size() * size_t(state_->vocab_size)));
  }
  Napi::Value result(Napi::Env env) override { return toTypedArray(env, std::move(logits_)); }

  PromptInputs in_;
  HostArray<float> logits_;
};

class ForwardPromptsCandidatesWorker final : public EngineWorker {
 public:
  ForwardPromptsCandidatesWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self,
                                 PromptInputs inputs, CandidateCall request)
      : EngineWorker(env, "flash-mpt:forwardPromptsCandidates", std::move(state), self),
        in_(std::move(inputs)),
        out_(std::move(request)) {}

 private:
  void compute(Engine& engine) override {
    const size_t n = in_.seqs.size();
    out_.allocate(n);
    engine.forwardPromptsCandidates(in_.seqs.data(), in_.ids.data(), in_.lengths.data(), int(n), out_.k,
                                    out_.sampleable_vocab, out_.ids.data.get(), out_.logits.data.get(),
                                    out_.log_sum_exp.data.get());
  }
  Napi::Value result(Napi::Env env) override { return out_.toObject(env); }

  PromptInputs in_;
  CandidateCall out_;
};

class DecodeBatchWorker final : public EngineWorker {
 public:
  DecodeBatchWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self,
                    std::vector<int> seqs, std::vector<int32_t> ids)
      : EngineWorker(env, "flash-mpt:decodeBatch", std::move(state), self),
        seqs_(std::move(seqs)),
        ids_(std::move(ids)) {}

 private:
  void compute(Engine& engine) override {
    engine.decodeBatch(seqs_.data(), ids_.data(), int(seqs_.size()), logits_.allocate(seqs_.size() * size_t(state_->vocab_size)));
  }
  Napi::Value result(Napi::Env env) override { return toTypedArray(env, std::move(logits_)); }

  std::vector<int> seqs_;
  std::vector<int32_t> ids_;
  HostArray<float> logits_;
};

class DecodeBatchCandidatesWorker final : public EngineWorker {
 public:
  DecodeBatchCandidatesWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self,
                              std::vector<int> seqs, std::vector<int32_t> ids, CandidateCall request)
      : EngineWorker(env, "flash-mpt:decodeBatchCandidates", std::move(state), self),
        seqs_(std::move(seqs)),
        ids_(std::move(ids)),
        out_(std::move(request)) {}

 private:
  void compute(Engine& engine) override {
    const size_t n = seqs_.size();
    out_.allocate(n);
    engine.decodeBatchCandidates(seqs_.data(), ids_.data(), int(n), out_.k, out_.sampleable_vocab,
                                 out_.ids.data.get(), out_.logits.data.get(), out_.log_sum_exp.data.get());
  }
  Napi::Value result(Napi::Env env) override { return out_.toObject(env); }

  std::vector<int> seqs_;
  std::vector<int32_t> ids_;
  CandidateCall out_;
};

class DecodeGreedyWorker final : public EngineWorker {
 public:
  DecodeGreedyWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self,
                     std::vector<int> seqs, std::vector<int32_t> ids, int steps, int sampleable_vocab, int banned_id)
      : EngineWorker(env, "flash-mpt:decodeGreedy", std::move(state), self),
        seqs_(std::move(seqs)),
        ids_(std::move(ids)),
        steps_(steps),
        sampleable_vocab_(sampleable_vocab),
        banned_id_(banned_id) {}

 private:
  void compute(Engine& engine) override {
    const size_t n = seqs_.size();
    engine.decodeGreedy(seqs_.data(), ids_.data(), int(n), steps_, sampleable_vocab_, banned_id_,
                        picks_.allocate(n * size_t(steps_)));
  }
  Napi::Value result(Napi::Env env) override { return toTypedArray(env, std::move(picks_)); }

  std::vector<int> seqs_;
  std::vector<int32_t> ids_;
  int steps_, sampleable_vocab_, banned_id_;
  HostArray<int32_t> picks_;
};

class LastLogitsWorker final : public EngineWorker {
 public:
  LastLogitsWorker(Napi::Env env, std::shared_ptr<EngineState> state, const Napi::Object& self, int row)
      : EngineWorker(env, "flash-mpt:lastLogits", std::move(state), self), row_(row) {}

 private:
  void compute(Engine& engine) override {
    engine.lastLogits(row_, logits_.allocate(size_t(state_->vocab_size)));
  }
  Napi::Value result(Napi::Env env) override { return toTypedArray(env, std::move(logits_)); }

  int row_;
  HostArray<float> logits_;
};

// Loads the weights off the JS thread. An optional onProgress(bytesDone, bytesTotal) hears about each percent of
// the checkpoint through a thread-safe function; an exception it throws is dropped (it must not fail the load).
class CreateEngineWorker final : public PromiseWorker {
 public:
  CreateEngineWorker(Napi::Env env, EngineOptions options, const Napi::Value& on_progress)
      : PromiseWorker(env, "flash-mpt:createEngine"), options_(std::move(options)) {
    if (on_progress.IsUndefined()) return;
    if (!on_progress.IsFunction()) fail("E_INVALID_ARGUMENT", "onProgress must be a function");
    progress_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "flash-mpt:loadProgress", 0, 1);
    options_.on_progress = [this](uint64_t done, uint64_t total) { report(done, total); };
  }
  ~CreateEngineWorker() override {
    if (progress_) progress_.Release();
  }

 private:
  void run() override {
    auto state = std::make_shared<EngineState>();
    state->engine = options_.device < 0 ? createCpuEngine(options_) : createCudaEngine(options_);
    state->vocab_size = options_.config.vocab_size;
    state->memory = {state->engine->weightBytes(), state->engine->kvCacheBytes(), state->engine->workspaceBytes()};
    state_ = std::move(state);
    options_.tensors.clear();
  }
  Napi::Value result(Napi::Env env) override {
    return constructorSlot(env, kClassName).New({Napi::External<std::shared_ptr<EngineState>>::New(env, &state_)});
  }

  void report(uint64_t done, uint64_t total) {
    if (done < total && done - last_reported_ < total / 100) return;
    last_reported_ = done;
    auto* bytes = new std::pair<double, double>(double(done), double(total));
    const napi_status status = progress_.NonBlockingCall(bytes, [](Napi::Env env, Napi::Function fn, std::pair<double, double>* b) {
      try {
        fn.Call({Napi::Number::New(env, b->first), Napi::Number::New(env, b->second)});
      } catch (const Napi::Error&) {
      }
      delete b;
    });
    if (status != napi_ok) delete bytes;
  }

  EngineOptions options_;
  std::shared_ptr<EngineState> state_;  // dropped (engine freed) if the JS object could not be made
  Napi::ThreadSafeFunction progress_;
  uint64_t last_reported_ = 0;
};

DType parseDType(const std::string& text, const std::string& what) {
  if (text == "F32") return DType::F32;
  if (text == "F16") return DType::F16;
  if (text == "BF16") return DType::BF16;
  fail("E_INVALID_ARGUMENT", what + " must be 'F32', 'F16' or 'BF16', got '" + text + "'");
}

ModelConfig parseConfig(const Napi::Object& object) {
  auto dim = [&](const char* key) {
    return int(integerArg(object.Get(key), std::string("config.") + key, 1, kMaxInt32));
  };
  auto number = [&](const char* key) { return float(numberArg(object.Get(key), std::string("config.") + key)); };
  ModelConfig config;
  config.d_model = dim("dModel");
  config.n_heads = dim("nHeads");
  config.n_layers = dim("nLayers");
  config.d_ff = dim("dFf");
  config.vocab_size = dim("vocabSize");
  config.max_seq_len = dim("maxSeqLen");
  config.ln_eps = number("layerNormEps");
  config.qk_ln = boolArg(object.Get("qkLn"), "config.qkLn");
  config.has_bias = boolArg(object.Get("hasBias"), "config.hasBias");
  config.clip_qkv = number("clipQkv");
  config.softmax_scale = number("softmaxScale");
  config.logit_scale = number("logitScale");
  const Napi::Float32Array slopes = float32ArrayArg(object.Get("alibiSlopes"), "config.alibiSlopes");
  config.alibi_slopes.assign(slopes.Data(), slopes.Data() + slopes.ElementLength());
  return config;
}

std::vector<TensorSource> parseTensors(const Napi::Value& value) {
  if (!value.IsArray()) fail("E_INVALID_ARGUMENT", "options.tensors must be an array");
  const auto array = value.As<Napi::Array>();
  std::vector<TensorSource> tensors(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const std::string what = "options.tensors[" + std::to_string(i) + "]";
    const Napi::Object object = objectArg(array.Get(i), what);
    TensorSource& tensor = tensors[i];
    tensor.name = stringArg(object.Get("name"), what + ".name");
    tensor.file = stringArg(object.Get("file"), what + ".file");
    tensor.offset = uint64_t(integerArg(object.Get("offset"), what + ".offset", 0, kMaxSafeInteger));
    tensor.bytes = uint64_t(integerArg(object.Get("bytes"), what + ".bytes", 0, kMaxSafeInteger));
    tensor.dtype = parseDType(stringArg(object.Get("dtype"), what + ".dtype"), what + ".dtype");
    const Napi::Value shape = object.Get("shape");
    if (!shape.IsArray()) fail("E_INVALID_ARGUMENT", what + ".shape must be an array");
    const auto dims = shape.As<Napi::Array>();
    for (uint32_t d = 0; d < dims.Length(); ++d) {
      tensor.shape.push_back(integerArg(dims.Get(d), what + ".shape[" + std::to_string(d) + "]", 0, kMaxSafeInteger));
    }
  }
  return tensors;
}

EngineOptions parseOptions(const Napi::Value& value) {
  const Napi::Object object = objectArg(value, "options");
  EngineOptions options;
  options.config = parseConfig(objectArg(object.Get("config"), "options.config"));
  options.tensors = parseTensors(object.Get("tensors"));
  options.random_weights = boolArg(object.Get("randomWeights"), "options.randomWeights");
  options.seed = uint64_t(integerArg(object.Get("seed"), "options.seed", 0, kMaxSafeInteger));
  options.device = int(integerArg(object.Get("device"), "options.device", -1, kMaxInt32));
  const std::string compute = stringArg(object.Get("computeDType"), "options.computeDType");
  if (compute != "bf16" && compute != "f16" && compute != "f32") {
    fail("E_INVALID_ARGUMENT", "options.computeDType must be 'bf16', 'f16' or 'f32', got '" + compute + "'");
  }
  options.compute_dtype = compute == "bf16" ? DType::BF16 : compute == "f16" ? DType::F16 : DType::F32;
  options.kv_tokens = integerArg(object.Get("kvTokens"), "options.kvTokens", 1, kMaxInt32);
  options.max_sequences = int(integerArg(object.Get("maxSequences"), "options.maxSequences", 1, kMaxInt32));
  options.kv_blocks = integerArg(object.Get("kvBlocks"), "options.kvBlocks", 0, kMaxInt32);
  options.threads = int(integerArg(object.Get("threads"), "options.threads", 0, 4096));
  return options;
}

// Queues the worker make() returns, or hands back a rejected promise when making it throws (bad arguments,
// a disposed engine).
template <typename Make>
Napi::Value queue(Napi::Env env, const std::shared_ptr<EngineState>& state, Make&& make) {
  try {
    PromiseWorker* worker = make();
    Napi::Promise promise = worker->promise();
    if (state) {
      std::lock_guard<std::mutex> lock(state->state_mutex);
      ++state->pending;
    }
    worker->Queue();  // the worker deletes itself when it completes
    return promise;
  } catch (...) {
    return rejected(env, std::current_exception());
  }
}

// The sequences and token ids of one decode step (decodeBatch's, decodeBatchCandidates' and decodeGreedy's first
// arguments).
struct DecodeInputs {
  std::vector<int> seqs;
  std::vector<int32_t> ids;
};

DecodeInputs decodeInputs(const Napi::CallbackInfo& info, const std::string& method) {
  const Napi::Int32Array seqs = int32ArrayArg(info[0], "seqs");
  const Napi::Int32Array ids = int32ArrayArg(info[1], "ids");
  if (seqs.ElementLength() != ids.ElementLength()) {
    fail("E_INVALID_ARGUMENT", method + " got " + std::to_string(seqs.ElementLength()) + " sequences and " +
                                   std::to_string(ids.ElementLength()) + " ids");
  }
  return {std::vector<int>(seqs.Data(), seqs.Data() + seqs.ElementLength()),
          std::vector<int32_t>(ids.Data(), ids.Data() + ids.ElementLength())};
}

PromptInputs promptInputs(const Napi::CallbackInfo& info, const std::string& method) {
  const Napi::Int32Array seqs = int32ArrayArg(info[0], "seqs");
  const Napi::Int32Array ids = int32ArrayArg(info[1], "ids");
  const Napi::Int32Array lengths = int32ArrayArg(info[2], "lengths");
  if (seqs.ElementLength() != lengths.ElementLength()) {
    fail("E_INVALID_ARGUMENT", method + " got " + std::to_string(seqs.ElementLength()) + " sequences and " +
                                   std::to_string(lengths.ElementLength()) + " lengths");
  }
  int64_t total = 0;
  for (size_t i = 0; i < lengths.ElementLength(); ++i) total += lengths[i];
  if (total != int64_t(ids.ElementLength())) {
    fail("E_INVALID_ARGUMENT", method + " got " + std::to_string(ids.ElementLength()) + " ids for prompts of " +
                                   std::to_string(total) + " tokens together");
  }
  return {std::vector<int>(seqs.Data(), seqs.Data() + seqs.ElementLength()),
          std::vector<int32_t>(ids.Data(), ids.Data() + ids.ElementLength()),
          std::vector<int64_t>(lengths.Data(), lengths.Data() + lengths.ElementLength())};
}

// k and sampleableVocab of a candidates call, arguments `at` and `at` + 1.
CandidateCall candidateRequest(const Napi::CallbackInfo& info, size_t at, int vocab_size) {
  CandidateCall request;
  request.k = int(integerArg(info[at], "k", 1, kMaxCandidates));
  request.sampleable_vocab = int(integerArg(info[at + 1], "sampleableVocab", 1, vocab_size));
  return request;
}

}  // namespace

void AddonEngine::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = DefineClass(env, kClassName,
                                           {
                                               InstanceMethod<&AddonEngine::CreateSequence>("createSequence"),
                                               InstanceMethod<&AddonEngine::ReleaseSequence>("releaseSequence"),
                                               InstanceMethod<&AddonEngine::SequenceLength>("sequenceLength"),
                                               InstanceMethod<&AddonEngine::Forward>("forward"),
                                               InstanceMethod<&AddonEngine::ForwardPrompts>("forwardPrompts"),
                                               InstanceMethod<&AddonEngine::ForwardPromptsCandidates>(
                                                   "forwardPromptsCandidates"),
                                               InstanceMethod<&AddonEngine::DecodeBatch>("decodeBatch"),
                                               InstanceMethod<&AddonEngine::DecodeBatchCandidates>(
                                                   "decodeBatchCandidates"),
                                               InstanceMethod<&AddonEngine::DecodeGreedy>("decodeGreedy"),
                                               InstanceMethod<&AddonEngine::LastLogits>("lastLogits"),
                                               InstanceMethod<&AddonEngine::Memory>("memory"),
                                               InstanceMethod<&AddonEngine::KvBlocks>("kvBlocks"),
                                               InstanceMethod<&AddonEngine::Dispose>("dispose"),
                                           });
  constructorSlot(env, kClassName) = Napi::Persistent(constructor);
  exports.Set("createEngine", Napi::Function::New<&AddonEngine::CreateEngine>(env, "createEngine"));
  exports.Set("kvBlockTokens", Napi::Number::New(env, kKvBlockTokens));
}

Napi::Value AddonEngine::CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, nullptr, [&] { return new CreateEngineWorker(env, parseOptions(info[0]), info[1]); });
}

AddonEngine::AddonEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AddonEngine>(info) {
  rethrowAsJs(info.Env(), [&] {
    if (info.Length() != 1 || !info[0].IsExternal()) fail("E_INVALID_ARGUMENT", "engines are made by createEngine(options)");
  });
  state_ = *info[0].As<Napi::External<std::shared_ptr<EngineState>>>().Data();
}

AddonEngine::~AddonEngine() { dispose(); }

Engine& AddonEngine::live() {
  std::lock_guard<std::mutex> lock(state_->state_mutex);
  if (state_->disposed) fail("E_DISPOSED", "the engine was disposed");
  return *state_->engine;
}

void AddonEngine::dispose() {
  if (!state_) return;
  std::unique_ptr<Engine> retired;
  std::lock_guard<std::mutex> lock(state_->state_mutex);
  state_->disposed = true;
  // With calls queued, the last of them frees the engine (EngineWorker::run).
  if (state_->pending == 0) retired = std::move(state_->engine);
}

Napi::Value AddonEngine::CreateSequence(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] { return Napi::Number::New(info.Env(), live().createSequence()); });
}

Napi::Value AddonEngine::ReleaseSequence(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    live().releaseSequence(int(integerArg(info[0], "seq", -kMaxInt32, kMaxInt32)));
    return info.Env().Undefined();
  });
}

Napi::Value AddonEngine::SequenceLength(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    const int64_t length = live().sequenceLength(int(integerArg(info[0], "seq", -kMaxInt32, kMaxInt32)));
    return Napi::Number::New(info.Env(), double(length));
  });
}

Napi::Value AddonEngine::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    const int seq = int(integerArg(info[0], "seq", -kMaxInt32, kMaxInt32));
    const Napi::Int32Array ids = int32ArrayArg(info[1], "ids");
    const bool all_logits = boolArg(info[2], "allLogits");
    return new ForwardWorker(env, state_, info.This().As<Napi::Object>(), seq,
                             std::vector<int32_t>(ids.Data(), ids.Data() + ids.ElementLength()), all_logits);
  });
}

Napi::Value AddonEngine::ForwardPrompts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    return new ForwardPromptsWorker(env, state_, info.This().As<Napi::Object>(), promptInputs(info, "forwardPrompts"));
  });
}

Napi::Value AddonEngine::ForwardPromptsCandidates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    PromptInputs inputs = promptInputs(info, "forwardPromptsCandidates");
    return new ForwardPromptsCandidatesWorker(env, state_, info.This().As<Napi::Object>(), std::move(inputs),
                                              candidateRequest(info, 3, state_->vocab_size));
  });
}

Napi::Value AddonEngine::DecodeBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    DecodeInputs inputs = decodeInputs(info, "decodeBatch");
    return new DecodeBatchWorker(env, state_, info.This().As<Napi::Object>(), std::move(inputs.seqs),
                                 std::move(inputs.ids));
  });
}

Napi::Value AddonEngine::DecodeBatchCandidates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    DecodeInputs inputs = decodeInputs(info, "decodeBatchCandidates");
    return new DecodeBatchCandidatesWorker(env, state_, info.This().As<Napi::Object>(), std::move(inputs.seqs),
                                           std::move(inputs.ids), candidateRequest(info, 2, state_->vocab_size));
  });
}

Napi::Value AddonEngine::DecodeGreedy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    DecodeInputs inputs = decodeInputs(info, "decodeGreedy");
    const int steps = int(integerArg(info[2], "steps", 1, kMaxGreedySteps));
    const int sampleable_vocab = int(integerArg(info[3], "sampleableVocab", 1, state_->vocab_size));
    const int banned_id = int(integerArg(info[4], "bannedId", -1, kMaxInt32));
    return new DecodeGreedyWorker(env, state_, info.This().As<Napi::Object>(), std::move(inputs.seqs),
                                  std::move(inputs.ids), steps, sampleable_vocab, banned_id);
  });
}

Napi::Value AddonEngine::LastLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue(env, state_, [&] {
    live();
    const int row = int(integerArg(info[0], "row", 0, kMaxInt32));
    return new LastLogitsWorker(env, state_, info.This().As<Napi::Object>(), row);
  });
}

Napi::Value AddonEngine::Memory(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    live();
    MemoryFigures memory;
    {
      std::lock_guard<std::mutex> lock(state_->state_mutex);
      memory = state_->memory;
    }
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("weightBytes", double(memory.weight_bytes));
    result.Set("kvCacheBytes", double(memory.kv_cache_bytes));
    result.Set("workspaceBytes", double(memory.workspace_bytes));
    return result;
  });
}

// { total, free, blockTokens } of the paged KV cache; like sequenceLength, never waits for a running call.
Napi::Value AddonEngine::KvBlocks(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    const Engine& engine = live();
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("total", double(engine.kvBlocks()));
    result.Set("free", double(engine.freeKvBlocks()));
    result.Set("blockTokens", double(kKvBlockTokens));
    return result;
  });
}

Napi::Value AddonEngine::Dispose(const Napi::CallbackInfo& info) {
  dispose();
  return info.Env().Undefined();
}

}  // namespace flashmpt::binding
