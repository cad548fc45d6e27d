#include "csrc/binding/napi_util.h"

#include <cmath>
#include <new>
#include <string>
#include <unordered_map>

#include "csrc/runtime/errors.h"

namespace flashmpt::binding {

std::string errorText(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const FlashError& e) {
    return "[" + e.code + "] " + e.what();
  } catch (const std::bad_alloc&) {
    return "[E_OUT_OF_MEMORY] out of host memory";
  } catch (const std::exception& e) {
    return std::string("[E_INTERNAL] ") + e.what();
  } catch (...) {
    return "[E_INTERNAL] unknown native exception";
  }
}

namespace {
struct AddonData {
  std::unordered_map<std::string, Napi::FunctionReference> constructors;
};
}  // namespace

Napi::FunctionReference& constructorSlot(Napi::Env env, const char* class_name) {
  auto* data = env.GetInstanceData<AddonData>();
  if (!data) {
    data = new AddonData();
    env.SetInstanceData<AddonData>(data);  // deleted when the env goes away
  }
  return data->constructors[class_name];
}

Napi::Object objectArg(const Napi::Value& value, const std::string& what) {
  if (!value.IsObject()) fail("E_INVALID_ARGUMENT", what + " must be an object");
  return value.As<Napi::Object>();
}

double numberArg(const Napi::Value& value, const std::string& what) {
  if (!value.IsNumber()) fail("E_INVALID_ARGUMENT", what + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

int64_t integerArg(const Napi::Value& value, const std::string& what, int64_t min, int64_t max) {
  const double number = numberArg(value, what);
  if (!(number == std::floor(number)) || number < double(min) || number > double(max)) {
    fail("E_INVALID_ARGUMENT", what + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                                   "], got " + std::to_string(number));
  }
  return int64_t(number);
}

bool boolArg(const Napi::Value& value, const std::string& what) {
  if (!value.IsBoolean()) fail("E_INVALID_ARGUMENT", what + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string stringArg(const Napi::Value& value, const std::string& what) {
  if (!value.IsString()) fail("E_INVALID_ARGUMENT", what + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Int32Array int32ArrayArg(const Napi::Value& value, const std::string& what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    fail("E_INVALID_ARGUMENT", what + " must be an Int32Array");
  }
  return value.As<Napi::Int32Array>();
}

Napi::Float32Array float32ArrayArg(const Napi::Value& value, const std::string& what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    fail("E_INVALID_ARGUMENT", what + " must be a Float32Array");
  }
  return value.As<Napi::Float32Array>();
}

}  // namespace flashmpt::binding
