// N-API: the same-run ceilings and kernel timings of `flash-mpt bench` (csrc/runtime/microbench.h).
#pragma once
#include <napi.h>

namespace flashmpt::binding {

struct AddonBench {
  static void Init(Napi::Env env, Napi::Object exports);
};

}  // namespace flashmpt::binding
