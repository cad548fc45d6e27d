// deviceCount() and buildInfo(): what this build of the addon can do.
#pragma once
#include <napi.h>

namespace flashmpt::binding {

struct AddonInfo {
  static void Init(Napi::Env env, Napi::Object exports);
};

}  // namespace flashmpt::binding
