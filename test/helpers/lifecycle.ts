import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

/** One memory reading of test/helpers/lifecycle-child.js (after forced collections). */
export interface LifecycleReading {
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
  /** Free memory of the model's GPU (cuda devices only). */
  gpuFreeMiB?: number;
  engine?: { weightBytes: number; kvCacheBytes: number; workspaceBytes: number };
}

export interface RepeatResult {
  warm: LifecycleReading;
  afterGenerations: LifecycleReading;
  afterStreams: LifecycleReading;
  generationFinishes: Record<string, number>;
  streamFinishes: Record<string, number>;
  scheduler: { queueLength: number; runningSequences: number; kvBlocksInUse: number };
}

export interface DisposeResult {
  before: LifecycleReading;
  loaded: LifecycleReading;
  disposed: LifecycleReading;
  afterDispose: Record<string, string>;
  asyncDispose: string;
}

export interface DropResult {
  dropped: number;
  collected: number;
  before: LifecycleReading;
  afterDrops: LifecycleReading;
  /** Weights of one dropped model. */
  weightMiB: number;
}

/** Runs a lifecycle scenario in a child `node --expose-gc` on `device` ('cpu' or 'cuda:N'). */
export function runLifecycleChild<T>(scenario: 'repeat' | 'dispose' | 'drop', device = 'cpu'): T {
  const child = path.join(__dirname, 'lifecycle-child.js');
  const res = spawnSync(process.execPath, ['--expose-gc', child, scenario, device], { encoding: 'utf8', timeout: 300_000 });
  if (res.status !== 0 || res.stderr !== '') throw new Error(`lifecycle-child ${scenario} ${device} exited with ${res.status} (signal ${res.signal}): ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

export const mib = (value: number) => `${value.toFixed(1)} MiB`;

/** Expectations shared by every device: finish reasons of the repeat scenario and the scheduler left empty. */
export function expectRepeatFinishes(r: RepeatResult): void {
  expect(r.generationFinishes).toEqual({ length: 1000 });
  const streamFinishes = Object.entries(r.streamFinishes);
  expect(streamFinishes.reduce((sum, [, n]) => sum + n, 0)).toBe(200);
  for (const [finish] of streamFinishes) expect(['abort', 'E_ABORTED']).toContain(finish);
  expect(r.scheduler).toEqual({ queueLength: 0, runningSequences: 0, kvBlocksInUse: 0 });
}

/** Every call after dispose() is E_DISPOSED, a second dispose() is not an error, Symbol.asyncDispose disposes. */
export function expectDisposedCalls(r: DisposeResult): void {
  expect(r.afterDispose).toEqual({ memory: 'E_DISPOSED', generate: 'E_DISPOSED', stream: 'E_DISPOSED', logits: 'E_DISPOSED', disposeAgain: 'no error' });
  expect(r.asyncDispose).toBe('E_DISPOSED');
}
