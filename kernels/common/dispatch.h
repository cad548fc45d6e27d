// Runtime flags → template constants. A launcher writes
//   return switchHalf(params.dtype, [&](auto t) { using T = typename decltype(t)::type; ...launch<T>...; });
//   return switchBool(params.bias != nullptr, [&](auto hasBias) { ...kernel<decltype(hasBias)::value>... });
// so each variant is one template instantiation and the dispatch stays a few lines.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "csrc/engine/engine.h"

namespace flashmpt {

template <class T>
struct TypeTag { using type = T; };

// The 16-bit compute types; anything else is an invalid argument.
template <class F>
cudaError_t switchHalf(DType dtype, F&& f) {
  switch (dtype) {
    case DType::BF16: return f(TypeTag<__nv_bfloat16>{});
    case DType::F16: return f(TypeTag<__half>{});
    default: return cudaErrorInvalidValue;
  }
}

// Any element type, float included.
template <class F>
cudaError_t switchAny(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: return f(TypeTag<float>{});
    case DType::BF16: return f(TypeTag<__nv_bfloat16>{});
    case DType::F16: return f(TypeTag<__half>{});
  }
  return cudaErrorInvalidValue;
}

template <class F>
cudaError_t switchBool(bool flag, F&& f) {
  return flag ? f(std::true_type{}) : f(std::false_type{});
}

}  // namespace flashmpt
