// CHECK for the dev/ harnesses: a failed CUDA call prints where and exits (harnesses may exit; the library never does).
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK(expr)                                                                                     \
  do {                                                                                                  \
    cudaError_t err_ = (expr);                                                                          \
    if (err_ != cudaSuccess) {                                                                          \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorName(err_), __FILE__, __LINE__, #expr); \
      std::exit(2);                                                                                     \
    }                                                                                                   \
  } while (0)
