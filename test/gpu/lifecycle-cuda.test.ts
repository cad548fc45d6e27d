/**
 * Lifecycle on cuda:0 (issue 8), in a child `node --expose-gc` running the compiled package: the same scenarios as
 * test/lifecycle.test.ts with the device's free memory (cudaMemGetInfo) read beside the host's. The engine takes
 * all its device memory at load, so generations and aborted streams must not move the device's free memory at
 * all, and dispose() or a collection must give back everything the load took.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DisposeResult, DropResult, LifecycleReading, RepeatResult, expectDisposedCalls, expectRepeatFinishes, mib, runLifecycleChild } from '../helpers/lifecycle';
import { describeGpu } from './gpu';

const MiB = 2 ** 20;
/** cudaMemGetInfo moves in pages of the driver's allocation granularity (2 MiB). */
const deviceGranularityMiB = 2;

const gpuFree = (r: LifecycleReading) => {
  if (r.gpuFreeMiB === undefined) throw new Error('the reading has no GPU memory figure');
  return r.gpuFreeMiB;
};
const reading = (r: LifecycleReading) => `RSS ${mib(r.rssMiB)}, JS heap ${mib(r.heapUsedMiB)}, GPU free ${mib(gpuFree(r))}`;

describeGpu('model lifecycle on cuda:0 (child process with --expose-gc)', () => {
  beforeAll(() => {
    if (!fs.existsSync(path.join(__dirname, '..', '..', 'dist', 'index.js'))) throw new Error('dist/ is not built: run `npm run build:ts`');
  });

  test('1,000 generations and 200 aborted streams: GPU and host memory do not grow', () => {
    const r = runLifecycleChild<RepeatResult>('repeat', 'cuda:0');
    console.log(
      [
        'lifecycle on cuda:0: tiny model (d_model 64, 2 layers, vocabulary 4096), after a warm-up of 200 generations + 200 aborted streams:',
        ...(['warm', 'afterGenerations', 'afterStreams'] as const).map((key) => `  ${key.padEnd(16)} ${reading(r[key])}`),
        `  finishes: generations ${JSON.stringify(r.generationFinishes)}, streams ${JSON.stringify(r.streamFinishes)}`,
      ].join('\n'),
    );
    expectRepeatFinishes(r);
    for (const after of [r.afterGenerations, r.afterStreams]) {
      expect(after.engine).toEqual(r.warm.engine);
      expect(Math.abs(gpuFree(after) - gpuFree(r.warm))).toBeLessThanOrEqual(deviceGranularityMiB);
      expect(after.rssMiB - r.warm.rssMiB).toBeLessThan(8);
      expect(after.heapUsedMiB - r.warm.heapUsedMiB).toBeLessThan(1);
    }
  }, 300_000);

  test('dispose() gives back the device memory the load took; every later call is E_DISPOSED', () => {
    const r = runLifecycleChild<DisposeResult>('dispose', 'cuda:0');
    const engine = r.loaded.engine!;
    const engineMiB = (engine.weightBytes + engine.kvCacheBytes + engine.workspaceBytes) / MiB;
    console.log(
      `lifecycle on cuda:0: d_model 512, 6 layers, vocabulary 8192 (engine ${mib(engineMiB)}: ${JSON.stringify(engine)}):\n` +
        `  before   ${reading(r.before)}\n  loaded   ${reading(r.loaded)}\n  disposed ${reading(r.disposed)}`,
    );
    expect(gpuFree(r.before) - gpuFree(r.loaded)).toBeGreaterThanOrEqual(engineMiB - deviceGranularityMiB);
    expect(gpuFree(r.before) - gpuFree(r.disposed)).toBeLessThanOrEqual(deviceGranularityMiB);
    expectDisposedCalls(r);
  }, 300_000);

  test('models collected without dispose() (half of them mid-stream) give back their device memory', () => {
    const r = runLifecycleChild<DropResult>('drop', 'cuda:0');
    console.log(`lifecycle on cuda:0: ${r.dropped} models dropped without dispose(), ${r.collected} collected:\n  before ${reading(r.before)}\n  after  ${reading(r.afterDrops)}`);
    expect(r.collected).toBe(r.dropped);
    expect(gpuFree(r.before) - gpuFree(r.afterDrops)).toBeLessThanOrEqual(deviceGranularityMiB);
  }, 300_000);
});
