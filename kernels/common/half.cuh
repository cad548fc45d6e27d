// Element-type helpers shared by the kernels: conversions between float and the 16-bit types, and the packed
// pair type used for 32-bit loads and stores.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace flashmpt {

template <class T>
struct HalfPair;
template <>
struct HalfPair<__nv_bfloat16> { using type = __nv_bfloat162; };
template <>
struct HalfPair<__half> { using type = __half2; };

template <class T>
__device__ __forceinline__ float toFloat(T x);
template <>
__device__ __forceinline__ float toFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ float toFloat<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
__device__ __forceinline__ float toFloat<__half>(__half x) { return __half2float(x); }

template <class T>
__device__ __forceinline__ T fromFloat(float x);
template <>
__device__ __forceinline__ float fromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float x) { return __float2half_rn(x); }

// Two floats rounded into one 32-bit word of T pairs (element 0 in the low half, as in memory).
template <class T>
__device__ __forceinline__ uint32_t packPair(float lo, float hi) {
  typename HalfPair<T>::type pair;
  pair.x = fromFloat<T>(lo);
  pair.y = fromFloat<T>(hi);
  return *reinterpret_cast<uint32_t*>(&pair);
}

template <class T>
__device__ __forceinline__ float2 unpackPair(uint32_t word) {
  const auto pair = *reinterpret_cast<const typename HalfPair<T>::type*>(&word);
  return make_float2(toFloat<T>(pair.x), toFloat<T>(pair.y));
}

}  // namespace flashmpt
