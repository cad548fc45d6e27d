/**
 * Lifecycle on the CPU backend, measured in a child `node --expose-gc` running the compiled package (dist/; npm ci
 * runs `prepare`) so that collections are forced before each reading (test/helpers/lifecycle-child.js):
 * repeated generations and aborted streams do not grow memory, dispose() frees the engine and every later call is
 * E_DISPOSED, and models collected without dispose() free theirs without crashing the process.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(__dirname, '..');
const MiB = 2 ** 20;

interface Reading {
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
  engine?: { weightBytes: number; kvCacheBytes: number; workspaceBytes: number };
}

function runChild<T>(scenario: string): T {
  const res = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, 'helpers', 'lifecycle-child.js'), scenario], { encoding: 'utf8', timeout: 120_000 });
  if (res.status !== 0 || res.stderr !== '') throw new Error(`lifecycle-child ${scenario} exited with ${res.status} (signal ${res.signal}): ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

const mib = (value: number) => `${value.toFixed(1)} MiB`;

describe('model lifecycle on the CPU backend (child process with --expose-gc)', () => {
  beforeAll(() => {
    if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) throw new Error('dist/ is not built: run `npm run build:ts`');
  });

  test('1,000 generations and 200 aborted streams: no growth of host or engine memory after a warm-up', () => {
    const r = runChild<{
      warm: Reading;
      afterGenerations: Reading;
      afterStreams: Reading;
      generationFinishes: Record<string, number>;
      streamFinishes: Record<string, number>;
      scheduler: { queueLength: number; runningSequences: number; kvBlocksInUse: number };
    }>('repeat');
    console.log(
      [
        'lifecycle: tiny model (d_model 64, 2 layers, vocabulary 4096), after 200 generations + 200 aborted streams of warm-up:',
        ...(['warm', 'afterGenerations', 'afterStreams'] as const).map(
          (key) => `  ${key.padEnd(16)} RSS ${mib(r[key].rssMiB)}, JS heap ${mib(r[key].heapUsedMiB)}, ArrayBuffers ${mib(r[key].arrayBuffersMiB)}, engine ${JSON.stringify(r[key].engine)}`,
        ),
        `  finishes: generations ${JSON.stringify(r.generationFinishes)}, streams ${JSON.stringify(r.streamFinishes)}`,
      ].join('\n'),
    );
    expect(r.generationFinishes).toEqual({ length: 1000 });
    const streamFinishes = Object.entries(r.streamFinishes);
    expect(streamFinishes.reduce((sum, [, n]) => sum + n, 0)).toBe(200);
    for (const [finish] of streamFinishes) expect(['abort', 'E_ABORTED']).toContain(finish);
    expect(r.scheduler).toEqual({ queueLength: 0, runningSequences: 0, kvBlocksInUse: 0 });

    for (const after of [r.afterGenerations, r.afterStreams]) {
      expect(after.engine).toEqual(r.warm.engine);
      // One 16 KiB logits row kept per call would add 16 MiB over the 1,000 generations; one per step, 128 MiB.
      expect(after.rssMiB - r.warm.rssMiB).toBeLessThan(8);
      expect(after.heapUsedMiB - r.warm.heapUsedMiB).toBeLessThan(1);
      expect(after.arrayBuffersMiB - r.warm.arrayBuffersMiB).toBeLessThan(0.25);
    }
  });

  test('dispose() frees the engine (RSS measured); every later call is E_DISPOSED; Symbol.asyncDispose disposes', () => {
    const r = runChild<{ before: Reading; loaded: Reading; disposed: Reading; afterDispose: Record<string, string>; asyncDispose: string }>('dispose');
    const weightsMiB = r.loaded.engine!.weightBytes / MiB;
    console.log(`lifecycle: d_model 512, 6 layers, vocabulary 8192 (${mib(weightsMiB)} of weights): RSS ${mib(r.before.rssMiB)} before, ${mib(r.loaded.rssMiB)} loaded, ${mib(r.disposed.rssMiB)} after dispose()`);
    expect(weightsMiB).toBeGreaterThan(80);
    expect(r.loaded.rssMiB - r.before.rssMiB).toBeGreaterThan(0.9 * weightsMiB);
    expect(r.loaded.rssMiB - r.disposed.rssMiB).toBeGreaterThan(0.9 * weightsMiB);
    expect(r.afterDispose).toEqual({ memory: 'E_DISPOSED', generate: 'E_DISPOSED', stream: 'E_DISPOSED', logits: 'E_DISPOSED', disposeAgain: 'no error' });
    expect(r.asyncDispose).toBe('E_DISPOSED');
  });

  test('models collected without dispose() (half of them mid-stream) free their memory and the process exits cleanly', () => {
    const r = runChild<{ dropped: number; collected: number; before: Reading; afterDrops: Reading }>('drop');
    console.log(`lifecycle: ${r.dropped} models of ~88 MiB dropped without dispose(), ${r.collected} collected: RSS ${mib(r.before.rssMiB)} before, ${mib(r.afterDrops.rssMiB)} after`);
    expect(r.collected).toBe(r.dropped);
    // Less than half of one model's weights left: each engine was freed by its finalizer.
    expect(r.afterDrops.rssMiB - r.before.rssMiB).toBeLessThan(44);
  });
});
