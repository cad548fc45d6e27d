#include "csrc/binding/addon_tensor.h"

#include <cstring>

#include "csrc/binding/napi_util.h"
#include "csrc/engine/weights.h"
#include "csrc/runtime/errors.h"

#if FLASH_MPT_WITH_CUDA
#include <cuda_runtime.h>

#include "csrc/runtime/cuda_check.h"
#endif

namespace flashmpt {
namespace {

using binding::rethrowAsJs;

Napi::FunctionReference& tensorClass(Napi::Env env) { return binding::constructorSlot(env, "Tensor"); }

std::vector<int64_t> parseShape(const Napi::Value& value) {
  if (!value.IsArray()) fail("E_INVALID_ARGUMENT", "shape must be an array of non-negative integers");
  const Napi::Array array = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value dim = array.Get(i);
    const double d = dim.IsNumber() ? dim.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 9.0e15 && double(int64_t(d)) == d)) {
      fail("E_INVALID_ARGUMENT", "shape must be an array of non-negative integers");
    }
    shape.push_back(int64_t(d));
  }
  return shape;
}

}  // namespace

DType parseDType(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  fail("E_INVALID_ARGUMENT", "dtype must be 'f32', 'bf16' or 'f16', got '" + name + "'");
}

const char* dtypeLabel(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
  }
  return "?";
}

TensorStorage::TensorStorage(bool cuda, DType dtype, std::vector<int64_t> shape)
    : cuda_(cuda), dtype_(dtype), shape_(std::move(shape)) {
  if (!cuda_) {
    host_.resize(bytes());
    data_ = host_.data();
    return;
  }
#if FLASH_MPT_WITH_CUDA
  if (bytes() > 0) cudaCheckAllocation(cudaMalloc(&data_, bytes()), "cudaMalloc", bytes(), true);
#else
  fail("E_DEVICE", "this build of flash-mpt has no CUDA backend");
#endif
}

TensorStorage::~TensorStorage() {
#if FLASH_MPT_WITH_CUDA
  if (cuda_ && data_) cudaFree(data_);
#endif
}

int64_t TensorStorage::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

size_t TensorStorage::bytes() const { return size_t(numel()) * dtypeSize(dtype_); }

std::vector<float> TensorStorage::toFloat() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  const void* src = data_;
  std::vector<uint8_t> staged;
#if FLASH_MPT_WITH_CUDA
  if (cuda_ && bytes() > 0) {
    staged.resize(bytes());
    CUDA_CHECK(cudaMemcpy(staged.data(), data_, bytes(), cudaMemcpyDeviceToHost));
    src = staged.data();
  }
#endif
  if (!out.empty()) convertElements(src, dtype_, out.data(), DType::F32, out.size());
  return out;
}

void TensorStorage::fromFloat(const float* values) {
  if (numel() == 0) return;
  if (!cuda_) {
    convertElements(values, DType::F32, data_, dtype_, size_t(numel()));
    return;
  }
#if FLASH_MPT_WITH_CUDA
  std::vector<uint8_t> staged(bytes());
  convertElements(values, DType::F32, staged.data(), dtype_, size_t(numel()));
  CUDA_CHECK(cudaMemcpy(data_, staged.data(), bytes(), cudaMemcpyHostToDevice));
#endif
}

Napi::Function AddonTensor::define(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "Tensor",
                                   {StaticMethod("fromArray", &AddonTensor::fromArray),
                                    InstanceAccessor("device", &AddonTensor::device, nullptr),
                                    InstanceAccessor("dtype", &AddonTensor::dtype, nullptr),
                                    InstanceAccessor("shape", &AddonTensor::shape, nullptr),
                                    InstanceAccessor("disposed", &AddonTensor::disposed, nullptr),
                                    InstanceMethod("toFloat32Array", &AddonTensor::toFloat32Array),
                                    InstanceMethod("dispose", &AddonTensor::dispose)});
  tensorClass(env) = Napi::Persistent(cls);
  return cls;
}

Napi::Object AddonTensor::wrap(Napi::Env env, std::shared_ptr<TensorStorage> storage) {
  using Holder = std::shared_ptr<TensorStorage>;
  auto external = Napi::External<Holder>::New(env, new Holder(std::move(storage)),
                                              [](Napi::Env, Holder* holder) { delete holder; });
  return tensorClass(env).New({external});
}

std::shared_ptr<TensorStorage> AddonTensor::unwrap(const Napi::Value& value, const char* what) {
  Napi::FunctionReference& cls = tensorClass(value.Env());
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(cls.Value())) {
    fail("E_INVALID_ARGUMENT", std::string(what) + " must be a Tensor");
  }
  AddonTensor* tensor = AddonTensor::Unwrap(value.As<Napi::Object>());
  if (!tensor->storage_) fail("E_DISPOSED", std::string(what) + " has been disposed");
  return tensor->storage_;
}

AddonTensor::AddonTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AddonTensor>(info) {
  rethrowAsJs(info.Env(), [&] {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      fail("E_INVALID_ARGUMENT", "use Tensor.fromArray(values, shape, { dtype, device }) to make a tensor");
    }
    storage_ = *info[0].As<Napi::External<std::shared_ptr<TensorStorage>>>().Data();
    return 0;
  });
}

Napi::Value AddonTensor::fromArray(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      fail("E_INVALID_ARGUMENT", "Tensor.fromArray(values: Float32Array, shape: number[], options?)");
    }
    const Napi::Float32Array values = info[0].As<Napi::Float32Array>();
    std::vector<int64_t> shape = parseShape(info[1]);
    DType dtype = DType::F32;
    bool cuda = false;
    if (info.Length() > 2 && info[2].IsObject()) {
      const Napi::Object options = info[2].As<Napi::Object>();
      if (options.Has("dtype") && !options.Get("dtype").IsUndefined()) {
        dtype = parseDType(options.Get("dtype").ToString().Utf8Value());
      }
      if (options.Has("device") && !options.Get("device").IsUndefined()) {
        const std::string device = options.Get("device").ToString().Utf8Value();
        if (device != "cpu" && device != "cuda") fail("E_INVALID_ARGUMENT", "device must be 'cpu' or 'cuda'");
        cuda = device == "cuda";
      }
    }
    auto storage = std::make_shared<TensorStorage>(cuda, dtype, std::move(shape));
    if (size_t(storage->numel()) != values.ElementLength()) {
      fail("E_INVALID_ARGUMENT", "shape holds " + std::to_string(storage->numel()) + " elements but values has " +
                                     std::to_string(values.ElementLength()));
    }
    storage->fromFloat(values.Data());
    return wrap(info.Env(), std::move(storage));
  });
}

Napi::Value AddonTensor::device(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), unwrap(info.This(), "tensor")->cuda() ? "cuda" : "cpu");
  });
}

Napi::Value AddonTensor::dtype(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), dtypeLabel(unwrap(info.This(), "tensor")->dtype()));
  });
}

Napi::Value AddonTensor::shape(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const std::vector<int64_t>& dims = unwrap(info.This(), "tensor")->shape();
    Napi::Array out = Napi::Array::New(info.Env(), dims.size());
    for (size_t i = 0; i < dims.size(); ++i) out.Set(uint32_t(i), Napi::Number::New(info.Env(), double(dims[i])));
    return out;
  });
}

Napi::Value AddonTensor::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), storage_ == nullptr);
}

Napi::Value AddonTensor::toFloat32Array(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const std::vector<float> values = unwrap(info.This(), "tensor")->toFloat();
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), values.size());
    if (!values.empty()) std::memcpy(out.Data(), values.data(), values.size() * sizeof(float));
    return out;
  });
}

Napi::Value AddonTensor::dispose(const Napi::CallbackInfo& info) {
  storage_.reset();
  return info.Env().Undefined();
}

void initTensorAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("Tensor", AddonTensor::define(env));
  Napi::Object kernels = Napi::Object::New(env);
  initKernels(env, kernels);
  exports.Set("kernels", kernels);
}

}  // namespace flashmpt
