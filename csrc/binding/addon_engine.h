// JS wrapper of an Engine (lib/native.ts NativeEngine) and the addon's createEngine.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <mutex>

#include "csrc/engine/engine.h"

namespace flashmpt::binding {

struct MemoryFigures {
  int64_t weight_bytes = 0, kv_cache_bytes = 0, workspace_bytes = 0;
};

// What an AddonEngine shares with its in-flight workers; it outlives the JS object while work is queued.
struct EngineState {
  std::unique_ptr<Engine> engine;
  int vocab_size = 0;
  // Serializes the engine's calls (forward, decodeBatch, decodeBatchCandidates, lastLogits): one at a time.
  std::mutex run_mutex;
  // Guards the fields below; never held during engine work, so the JS thread does not wait on a forward.
  std::mutex state_mutex;
  int pending = 0;  // workers queued or running
  bool disposed = false;
  MemoryFigures memory;  // refreshed after each call, so memory() need not wait for a running one
};

class AddonEngine : public Napi::ObjectWrap<AddonEngine> {
 public:
  // Registers createEngine (and the class it returns instances of) on exports.
  static void Init(Napi::Env env, Napi::Object exports);

  explicit AddonEngine(const Napi::CallbackInfo& info);  // only from createEngine's worker
  ~AddonEngine() override;

 private:
  static Napi::Value CreateEngine(const Napi::CallbackInfo& info);

  Napi::Value CreateSequence(const Napi::CallbackInfo& info);
  Napi::Value ReleaseSequence(const Napi::CallbackInfo& info);
  Napi::Value SequenceLength(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardPrompts(const Napi::CallbackInfo& info);
  Napi::Value ForwardPromptsCandidates(const Napi::CallbackInfo& info);
  Napi::Value DecodeBatch(const Napi::CallbackInfo& info);
  Napi::Value DecodeBatchCandidates(const Napi::CallbackInfo& info);
  Napi::Value DecodeGreedy(const Napi::CallbackInfo& info);
  Napi::Value LastLogits(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value KvBlocks(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // The engine for a synchronous call; throws E_DISPOSED after dispose().
  Engine& live();
  void dispose();

  std::shared_ptr<EngineState> state_;
};

}  // namespace flashmpt::binding
