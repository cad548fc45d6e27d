#include "csrc/binding/addon_info.h"

#include "csrc/engine/engine.h"

#ifndef FLASH_MPT_VERSION
#error "FLASH_MPT_VERSION (package.json's version) must be defined by the build"
#endif

namespace flashmpt::binding {
namespace {

Napi::Value DeviceCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cudaDeviceCount()); }

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Object result = Napi::Object::New(info.Env());
#ifdef FLASH_MPT_WITH_CUDA
  result.Set("cuda", true);
#else
  result.Set("cuda", false);
#endif
  result.Set("version", FLASH_MPT_VERSION);
  return result;
}

}  // namespace

void AddonInfo::Init(Napi::Env env, Napi::Object exports) {
  exports.Set("deviceCount", Napi::Function::New<DeviceCount>(env, "deviceCount"));
  exports.Set("buildInfo", Napi::Function::New<BuildInfo>(env, "buildInfo"));
}

}  // namespace flashmpt::binding
