// What `flash-mpt doctor` reports of one CUDA device. Builds without CUDA throw FlashError E_DEVICE.
#pragma once
#include <cstddef>
#include <string>

namespace flashmpt {

struct DeviceInfo {
  std::string name;
  int compute_major = 0, compute_minor = 0;
  size_t total_bytes = 0, free_bytes = 0;
  int multiprocessors = 0;
  // CUDA versions as 1000·major + 10·minor (12040 = 12.4): the newest the driver supports, and the runtime
  // linked into the addon (which must not be newer than the driver's).
  int driver_cuda_version = 0;
  int runtime_cuda_version = 0;
};

// E_DEVICE for an ordinal that is not a visible device. Creates the device's primary context (as the engine
// would) to read its free memory, leaving the calling thread's current device as it was.
DeviceInfo queryDeviceInfo(int device);

}  // namespace flashmpt
