// A Napi::AsyncWorker that settles a promise, shared by the bindings whose work runs off the JS thread.
#pragma once
#include <napi.h>

#include "csrc/binding/napi_util.h"

namespace flashmpt::binding {

// A Napi::AsyncWorker settling a promise: run() executes on the libuv pool, and whatever it throws rejects the
// promise with errorText's "[CODE] message"; result() builds the resolved value on the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  virtual void run() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;

 private:
  void Execute() final {
    try {
      run();
    } catch (...) {
      SetError(errorText(std::current_exception()));
    }
  }
  void OnOK() final {
    // An exception escaping OnOK would become an uncaught JS exception; it rejects the promise instead.
    try {
      deferred_.Resolve(result(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(Napi::Error::New(Env(), errorText(std::current_exception())).Value());
    }
  }
  void OnError(const Napi::Error& e) final { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
};

}  // namespace flashmpt::binding
