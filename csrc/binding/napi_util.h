// Helpers shared by the csrc/binding classes: the one conversion of native exceptions into JS errors,
// per-instance constructor storage, and argument readers.
#pragma once
#include <napi.h>

#include <cstdint>
#include <exception>
#include <string>

namespace flashmpt::binding {

// "[CODE] message" for an exception thrown by native code: a FlashError keeps its code, std::bad_alloc is
// E_OUT_OF_MEMORY, anything else E_INTERNAL. lib/errors.ts's fromNativeError parses the code back out.
std::string errorText(std::exception_ptr error);

// Runs body() on the JS thread; a native exception leaves as a JS Error carrying errorText's message.
template <typename Body>
auto rethrowAsJs(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw Napi::Error::New(env, errorText(std::current_exception()));
  }
}

// The constructor of a wrapped class, stored per addon instance (each worker_thread loads its own), so
// native code can create instances. The env's instance data belongs to this registry: use it, not
// Env::SetInstanceData.
Napi::FunctionReference& constructorSlot(Napi::Env env, const char* class_name);

// Readers that throw FlashError E_INVALID_ARGUMENT naming `what` when the value has the wrong type.
Napi::Object objectArg(const Napi::Value& value, const std::string& what);
double numberArg(const Napi::Value& value, const std::string& what);
int64_t integerArg(const Napi::Value& value, const std::string& what, int64_t min, int64_t max);
bool boolArg(const Napi::Value& value, const std::string& what);
std::string stringArg(const Napi::Value& value, const std::string& what);
Napi::Int32Array int32ArrayArg(const Napi::Value& value, const std::string& what);
Napi::Float32Array float32ArrayArg(const Napi::Value& value, const std::string& what);

}  // namespace flashmpt::binding
