import { loadNative } from '../../lib/native';

/** Why GPU tests cannot run here, or null when a CUDA device is visible. */
function missingGpu(): string | null {
  try {
    const native = loadNative();
    if (native.deviceCount() > 0) return null;
    return native.buildInfo().cuda ? 'no CUDA GPU visible' : 'the addon was built without CUDA';
  } catch (err) {
    return `the native addon does not load: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/**
 * `describe` for suites that need a CUDA GPU. Without one the suite is skipped with the reason in its title,
 * unless FLASH_MPT_REQUIRE_GPU=1, where it fails instead.
 */
export function describeGpu(title: string, fn: () => void): void {
  const why = missingGpu();
  if (why === null) {
    describe(title, fn);
  } else if (process.env.FLASH_MPT_REQUIRE_GPU === '1') {
    describe(title, () => {
      it('has a CUDA GPU (FLASH_MPT_REQUIRE_GPU=1)', () => {
        throw new Error(`FLASH_MPT_REQUIRE_GPU=1 but ${why}`);
      });
    });
  } else {
    describe.skip(`${title} (skipped: ${why}; FLASH_MPT_REQUIRE_GPU=1 makes this a failure)`, fn);
  }
}

/**
 * `describe` for suites that need `count` CUDA GPUs (more than one): without any GPU, as describeGpu; with fewer than
 * `count` the suite is skipped with the reason in its title even under FLASH_MPT_REQUIRE_GPU=1, which asks for a GPU,
 * not for a machine of several.
 */
export function describeGpus(count: number, title: string, fn: () => void): void {
  const visible = missingGpu() === null ? loadNative().deviceCount() : 0;
  if (visible === 0 || visible >= count) describeGpu(title, fn);
  else describe.skip(`${title} (skipped: needs ${count} CUDA GPUs, ${visible} visible)`, fn);
}

/** Seeded uniform values in [-scale, scale) (mulberry32), so a failure reproduces. */
export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}

/** ‖a − b‖ / ‖b‖ (Infinity when a holds a NaN). */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let err = 0;
  let ref = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    err += d * d;
    ref += b[i] * b[i];
  }
  const rel = Math.sqrt(err / Math.max(ref, 1e-30));
  return Number.isNaN(rel) ? Infinity : rel;
}
