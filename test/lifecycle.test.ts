/**
 * Lifecycle on the CPU backend, measured in a child `node --expose-gc` running the compiled package (dist/; npm ci
 * runs `prepare`) so that collections are forced before each reading (test/helpers/lifecycle-child.js):
 * repeated generations and aborted streams do not grow memory, dispose() frees the engine and every later call is
 * E_DISPOSED, and models collected without dispose() free theirs without crashing the process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DisposeResult, DropResult, RepeatResult, expectDisposedCalls, expectRepeatFinishes, mib, runLifecycleChild } from './helpers/lifecycle';

const root = path.join(__dirname, '..');
const MiB = 2 ** 20;

describe('model lifecycle on the CPU backend (child process with --expose-gc)', () => {
  beforeAll(() => {
    if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) throw new Error('dist/ is not built: run `npm run build:ts`');
  });

  test('1,000 generations and 200 aborted streams: no growth of host or engine memory after a warm-up', () => {
    const r = runLifecycleChild<RepeatResult>('repeat');
    console.log(
      [
        'lifecycle: tiny model (d_model 64, 2 layers, vocabulary 4096), after 200 generations + 200 aborted streams of warm-up:',
        ...(['warm', 'afterGenerations', 'afterStreams'] as const).map(
          (key) => `  ${key.padEnd(16)} RSS ${mib(r[key].rssMiB)}, JS heap ${mib(r[key].heapUsedMiB)}, ArrayBuffers ${mib(r[key].arrayBuffersMiB)}, engine ${JSON.stringify(r[key].engine)}`,
        ),
        `  finishes: generations ${JSON.stringify(r.generationFinishes)}, streams ${JSON.stringify(r.streamFinishes)}`,
      ].join('\n'),
    );
    expectRepeatFinishes(r);

    for (const after of [r.afterGenerations, r.afterStreams]) {
      expect(after.engine).toEqual(r.warm.engine);
      // One 16 KiB logits row kept per call would add 16 MiB over the 1,000 generations; one per step, 128 MiB.
      expect(after.rssMiB - r.warm.rssMiB).toBeLessThan(8);
      expect(after.heapUsedMiB - r.warm.heapUsedMiB).toBeLessThan(1);
      expect(after.arrayBuffersMiB - r.warm.arrayBuffersMiB).toBeLessThan(0.25);
    }
  });

  test('dispose() frees the engine (RSS measured); every later call is E_DISPOSED; Symbol.asyncDispose disposes', () => {
    const r = runLifecycleChild<DisposeResult>('dispose');
    const weightsMiB = r.loaded.engine!.weightBytes / MiB;
    console.log(`lifecycle: d_model 512, 6 layers, vocabulary 8192 (${mib(weightsMiB)} of weights): RSS ${mib(r.before.rssMiB)} before, ${mib(r.loaded.rssMiB)} loaded, ${mib(r.disposed.rssMiB)} after dispose()`);
    expect(weightsMiB).toBeGreaterThan(80);
    expect(r.loaded.rssMiB - r.before.rssMiB).toBeGreaterThan(0.9 * weightsMiB);
    expect(r.loaded.rssMiB - r.disposed.rssMiB).toBeGreaterThan(0.9 * weightsMiB);
    expectDisposedCalls(r);
  });

  test('models collected without dispose() (half of them mid-stream) free their memory and the process exits cleanly', () => {
    const r = runLifecycleChild<DropResult>('drop');
    console.log(`lifecycle: ${r.dropped} models of ~88 MiB dropped without dispose(), ${r.collected} collected: RSS ${mib(r.before.rssMiB)} before, ${mib(r.afterDrops.rssMiB)} after`);
    expect(r.collected).toBe(r.dropped);
    // Less than half of one model's weights left: each engine was freed by its finalizer.
    expect(r.weightMiB).toBeGreaterThan(80);
    expect(r.afterDrops.rssMiB - r.before.rssMiB).toBeLessThan(r.weightMiB / 2);
  });
});
