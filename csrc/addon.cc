// Addon registration only: each csrc/binding class adds its functions and classes to the exports.
#include <napi.h>

#include "csrc/binding/addon_bench.h"
#include "csrc/binding/addon_devices.h"
#include "csrc/binding/addon_engine.h"
#include "csrc/binding/addon_info.h"
#include "csrc/binding/addon_tensor.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  flashmpt::binding::AddonInfo::Init(env, exports);
  flashmpt::binding::AddonEngine::Init(env, exports);
  flashmpt::initTensorAddon(env, exports);
  flashmpt::binding::AddonBench::Init(env, exports);
  flashmpt::binding::AddonDevices::Init(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(flash_mpt, Init)
