// queryDeviceInfo in a build made without nvcc (FLASH_MPT_CUDA=0, no CUDA toolkit, or node-gyp).
#ifndef FLASH_MPT_WITH_CUDA
#include "csrc/runtime/device_info.h"
#include "csrc/runtime/errors.h"

namespace flashmpt {

DeviceInfo queryDeviceInfo(int) {
  fail("E_DEVICE", "this build of flash-mpt has no CUDA backend: there are no CUDA devices to describe");
}

}  // namespace flashmpt
#endif
