// RAII owners of device memory (cudaMalloc) and page-locked host memory (cudaMallocHost). Allocation failures
// throw FlashError E_OUT_OF_MEMORY naming the bytes asked for; destructors never throw.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "csrc/runtime/cuda_check.h"

namespace flashmpt {

template <bool kPinnedHost>
class CudaAllocation {
 public:
  CudaAllocation() = default;
  explicit CudaAllocation(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    if constexpr (kPinnedHost) {
      cudaCheckAllocation(cudaMallocHost(&ptr_, bytes), "cudaMallocHost", bytes, false);
    } else {
      cudaCheckAllocation(cudaMalloc(&ptr_, bytes), "cudaMalloc", bytes, true);
    }
  }
  ~CudaAllocation() { release(); }
  CudaAllocation(CudaAllocation&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  CudaAllocation& operator=(CudaAllocation&& other) noexcept {
    if (this != &other) {
      release();
      ptr_ = std::exchange(other.ptr_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  CudaAllocation(const CudaAllocation&) = delete;
  CudaAllocation& operator=(const CudaAllocation&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void release() noexcept {
    if (!ptr_) return;
    if constexpr (kPinnedHost) {
      cudaFreeHost(ptr_);
    } else {
      cudaFree(ptr_);
    }
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = CudaAllocation<false>;
using PinnedBuffer = CudaAllocation<true>;

}  // namespace flashmpt
