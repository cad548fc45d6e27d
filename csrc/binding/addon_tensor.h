// N-API `Tensor`: a typed buffer on the CPU or a CUDA device (dtype f32 | bf16 | f16, a shape), made from and
// read back into Float32Arrays, freed by dispose(). Kernel functions (addon_kernels.cc) take and return them.
// Registered by csrc/addon.cc through initTensorAddon (exports.Tensor and exports.kernels).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csrc/engine/engine.h"

namespace flashmpt {

// The storage behind a JS Tensor. Device memory is held through an opaque owner so this header needs no
// CUDA headers (the CPU-only build compiles it too).
class TensorStorage {
 public:
  TensorStorage(bool cuda, DType dtype, std::vector<int64_t> shape);  // uninitialized; throws E_OUT_OF_MEMORY
  ~TensorStorage();
  TensorStorage(const TensorStorage&) = delete;
  TensorStorage& operator=(const TensorStorage&) = delete;

  bool cuda() const { return cuda_; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;
  size_t bytes() const;
  void* data() const { return data_; }

  // Host fp32 image of the contents (converted from the dtype), and the reverse.
  std::vector<float> toFloat() const;
  void fromFloat(const float* values);

 private:
  bool cuda_;
  DType dtype_;
  std::vector<int64_t> shape_;
  std::vector<uint8_t> host_;
  void* data_ = nullptr;
};

class AddonTensor : public Napi::ObjectWrap<AddonTensor> {
 public:
  static Napi::Function define(Napi::Env env);
  // A new JS Tensor owning `storage`.
  static Napi::Object wrap(Napi::Env env, std::shared_ptr<TensorStorage> storage);
  // The storage of a JS Tensor argument; throws E_INVALID_ARGUMENT for a non-tensor, E_DISPOSED after dispose().
  static std::shared_ptr<TensorStorage> unwrap(const Napi::Value& value, const char* what);

  explicit AddonTensor(const Napi::CallbackInfo& info);

 private:
  static Napi::Value fromArray(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value toFloat32Array(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<TensorStorage> storage_;
};

DType parseDType(const std::string& name);  // 'f32' | 'bf16' | 'f16', else E_INVALID_ARGUMENT
const char* dtypeLabel(DType dtype);

// exports.Tensor and exports.kernels.
void initTensorAddon(Napi::Env env, Napi::Object exports);
void initKernels(Napi::Env env, Napi::Object kernels);  // addon_kernels.cc

}  // namespace flashmpt
