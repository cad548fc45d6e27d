// Runtime flags -> template constants, as in FlashAttention's static_switch.h: each macro runs its body with
// the flag bound to a constexpr of the given name, so one call site covers every instantiation.
// Usage: BOOL_SWITCH(params.causal, kCausal, [&] { return run<kCausal>(params, stream); });
#pragma once

#define BOOL_SWITCH(COND, CONST_NAME, ...)      \
  [&] {                                         \
    if (COND) {                                 \
      constexpr static bool CONST_NAME = true;  \
      return __VA_ARGS__();                     \
    } else {                                    \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                     \
    }                                           \
  }()

// head_dim must already be validated to be 64 or 128.
#define HEADDIM_SWITCH(HEADDIM, CONST_NAME, ...) \
  [&] {                                          \
    if ((HEADDIM) == 64) {                       \
      constexpr static int CONST_NAME = 64;      \
      return __VA_ARGS__();                      \
    } else {                                     \
      constexpr static int CONST_NAME = 128;     \
      return __VA_ARGS__();                      \
    }                                            \
  }()

// dtype must already be validated to be F16 or BF16.
#define DTYPE_SWITCH(DTYPE, TYPE_NAME, ...)                \
  [&] {                                                    \
    if ((DTYPE) == ::flashmpt::AttnDType::BF16) {          \
      using TYPE_NAME = __nv_bfloat16;                     \
      return __VA_ARGS__();                                \
    } else {                                               \
      using TYPE_NAME = __half;                            \
      return __VA_ARGS__();                                \
    }                                                      \
  }()
