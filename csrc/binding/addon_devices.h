// deviceInfo(i): one CUDA device's name, compute capability, memory and CUDA versions (for `flash-mpt doctor`).
#pragma once
#include <napi.h>

namespace flashmpt::binding {

struct AddonDevices {
  static void Init(Napi::Env env, Napi::Object exports);
};

}  // namespace flashmpt::binding
