/**
 * CUDA device descriptions (for `flash-mpt doctor`): the addon's deviceInfo(i), typed here and turned into
 * readable units. A binary built before deviceInfo existed lacks it: that is E_NATIVE, asking for a rebuild.
 */
import { FlashMptError, fromNativeError } from './errors';
import { loadNative } from './native';

/** deviceInfo's result as it crosses from csrc/binding/addon_devices.cc. */
interface NativeDeviceInfo {
  name: string;
  computeMajor: number;
  computeMinor: number;
  totalBytes: number;
  freeBytes: number;
  multiprocessors: number;
  /** 1000·major + 10·minor */
  driverCudaVersion: number;
  runtimeCudaVersion: number;
}

interface DeviceInfoAddon {
  deviceInfo?: (device: number) => NativeDeviceInfo;
}

export interface DeviceInfo {
  /** CUDA ordinal, as in device 'cuda:N' */
  index: number;
  name: string;
  /** "9.0" for H100 */
  computeCapability: string;
  totalBytes: number;
  freeBytes: number;
  multiprocessors: number;
  /** Newest CUDA version the installed driver supports, e.g. "12.4". */
  driverCudaVersion: string;
  /** CUDA runtime linked into the addon; it needs a driver supporting at least this version. */
  runtimeCudaVersion: string;
}

function cudaVersion(encoded: number): string {
  return `${Math.floor(encoded / 1000)}.${Math.floor((encoded % 1000) / 10)}`;
}

/** One CUDA device: E_DEVICE when it does not exist or the build has no CUDA backend. */
export function deviceInfo(index: number): DeviceInfo {
  const addon = loadNative() as unknown as DeviceInfoAddon;
  if (typeof addon.deviceInfo !== 'function') {
    throw new FlashMptError('E_NATIVE', 'the loaded flash-mpt binary predates deviceInfo(); rebuild it with `npm run build`');
  }
  let info: NativeDeviceInfo;
  try {
    info = addon.deviceInfo(index);
  } catch (err) {
    throw fromNativeError(err);
  }
  return {
    index,
    name: info.name,
    computeCapability: `${info.computeMajor}.${info.computeMinor}`,
    totalBytes: info.totalBytes,
    freeBytes: info.freeBytes,
    multiprocessors: info.multiprocessors,
    driverCudaVersion: cudaVersion(info.driverCudaVersion),
    runtimeCudaVersion: cudaVersion(info.runtimeCudaVersion),
  };
}
