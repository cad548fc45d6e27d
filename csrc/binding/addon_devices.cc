#include "csrc/binding/addon_devices.h"

#include "csrc/binding/napi_util.h"
#include "csrc/runtime/device_info.h"

namespace flashmpt::binding {
namespace {

// deviceInfo(device) → { name, computeMajor, computeMinor, totalBytes, freeBytes, multiprocessors,
// driverCudaVersion, runtimeCudaVersion }. Synchronous: the first call on a device creates its context.
Napi::Value DeviceInfoOf(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&] {
    const DeviceInfo device = queryDeviceInfo(int(integerArg(info[0], "device", 0, 1023)));
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("name", device.name);
    out.Set("computeMajor", device.compute_major);
    out.Set("computeMinor", device.compute_minor);
    out.Set("totalBytes", double(device.total_bytes));
    out.Set("freeBytes", double(device.free_bytes));
    out.Set("multiprocessors", device.multiprocessors);
    out.Set("driverCudaVersion", device.driver_cuda_version);
    out.Set("runtimeCudaVersion", device.runtime_cuda_version);
    return Napi::Value(out);
  });
}

}  // namespace

void AddonDevices::Init(Napi::Env env, Napi::Object exports) {
  exports.Set("deviceInfo", Napi::Function::New<DeviceInfoOf>(env, "deviceInfo"));
}

}  // namespace flashmpt::binding
