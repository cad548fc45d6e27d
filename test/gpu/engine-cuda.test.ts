/**
 * The CUDA engine against the CPU reference engine on the same seeded random weights (both backends generate
 * them from one counter-based generator), in bf16, f16 and the float32 mode: prefill (one chunk and several),
 * decode steps (through the CUDA graph in half precision), batched decode with padding, the real 1B shape;
 * sequence calls that never wait for a running forward; and its errors: context, token range, slots, out of
 * memory at load with the engine still usable after.
 */
import { mptAlibiSlopes } from '../../lib/config';
import { loadNative, NativeEngine, NativeEngineOptions, NativeModelConfig } from '../../lib/native';
import { nativeEngineOptions, nativeModelConfig } from '../helpers/native-config';
import { describeGpu, relativeL2 } from './gpu';

function config(overrides: Partial<NativeModelConfig> = {}): NativeModelConfig {
  return nativeModelConfig({ dModel: 256, nLayers: 3, vocabSize: 1000, hasBias: true, clipQkv: 0.9, ...overrides });
}

const SEED_1B: Partial<NativeModelConfig> = {
  dModel: 2048,
  nHeads: 16,
  nLayers: 24,
  dFf: 8192,
  vocabSize: 50432,
  maxSeqLen: 2048,
  hasBias: false,
  clipQkv: 0,
  softmaxScale: 1 / Math.sqrt(128),
  alibiSlopes: mptAlibiSlopes(16, 8),
};

function options(c: NativeModelConfig, device: number, overrides: Partial<NativeEngineOptions> = {}): NativeEngineOptions {
  return nativeEngineOptions(c, { device, kvTokens: 512, ...overrides });
}

function ids(n: number, seed: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % vocab);
}

function rows(logits: Float32Array, vocab: number): Float32Array[] {
  return Array.from({ length: logits.length / vocab }, (_, r) => logits.subarray(r * vocab, (r + 1) * vocab));
}

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (err) {
    expect(String((err as Error).message)).toContain(`[${code}]`);
    return;
  }
  throw new Error(`expected a ${code} error`);
}

/**
 * The paged KV cache under fragmentation, run identically on both engines: a released sequence's blocks go to one
 * that needs more than they hold (its rows then sit in blocks out of order), a chunk extends a cached prefix (read
 * back from the blocks), and a batched decode mixes both sequences. Every logits row must match within 2e-2.
 */
async function expectPagedCacheMatches(cpu: NativeEngine, gpu: NativeEngine, vocab: number): Promise<void> {
  const both = async (call: (engine: NativeEngine, seq: number[]) => Promise<Float32Array>, seqs: [number[], number[]]) => {
    const want = rows(await call(cpu, seqs[0]), vocab);
    const got = rows(await call(gpu, seqs[1]), vocab);
    expect(got.length).toBe(want.length);
    for (let r = 0; r < want.length; r++) expect(relativeL2(got[r], want[r])).toBeLessThanOrEqual(2e-2);
  };
  const create = (): [number[], number[]] => [[cpu.createSequence()], [gpu.createSequence()]];
  const a = create();
  const b = create();
  await both((e, [s]) => e.forward(s, ids(100, 21, vocab), false), a);
  await both((e, [s]) => e.forward(s, ids(30, 22, vocab), false), b);
  cpu.releaseSequence(a[0][0]);
  gpu.releaseSequence(a[1][0]);
  const c = create();
  await both((e, [s]) => e.forward(s, ids(150, 23, vocab), true), c);
  await both((e, [s]) => e.forward(s, ids(40, 24, vocab), true), c);
  for (let step = 0; step < 3; step++) {
    const next = Int32Array.of(step + 3, step + 9);
    await both((e, [sb, sc]) => e.decodeBatch(Int32Array.of(sb, sc), next), [[b[0][0], c[0][0]], [b[1][0], c[1][0]]]);
  }
  expect(gpu.kvBlocks()).toEqual(cpu.kvBlocks());
}

describeGpu('CUDA engine vs the CPU reference engine', () => {
  const native = loadNative();

  // Half precision within 2e-2; the float32 mode (same fp32 weights as the CPU engine) within 1e-4.
  describe.each([
    ['bf16', 2e-2],
    ['f16', 2e-2],
    ['f32', 1e-4],
  ] as const)('%s, small model with biases, clip and QK-LayerNorm', (dtype, tol) => {
    const c = config();
    let cpu: NativeEngine;
    let gpu: NativeEngine;
    beforeAll(async () => {
      cpu = await native.createEngine(options(c, -1, { kvTokens: 2304 }));
      gpu = await native.createEngine(options(c, 0, { kvTokens: 2304, computeDType: dtype }));
    });
    afterAll(() => {
      cpu?.dispose();
      gpu?.dispose();
    });

    it('prefill logits at every position, then decode steps (eager, then the captured graph)', async () => {
      const s0 = cpu.createSequence();
      const s1 = gpu.createSequence();
      const prompt = ids(37, 1, c.vocabSize);
      const want = rows(await cpu.forward(s0, prompt, true), c.vocabSize);
      const got = rows(await gpu.forward(s1, prompt, true), c.vocabSize);
      for (let r = 0; r < prompt.length; r++) expect(relativeL2(got[r], want[r])).toBeLessThanOrEqual(tol);
      for (let step = 0; step < 5; step++) {
        const token = Int32Array.of((step * 31 + 5) % c.vocabSize);
        const a = await cpu.forward(s0, token, false);
        const b = await gpu.forward(s1, token, false);
        expect(relativeL2(b, a)).toBeLessThanOrEqual(tol);
      }
      expect(gpu.sequenceLength(s1)).toBe(42);
      cpu.releaseSequence(s0);
      gpu.releaseSequence(s1);
    });

    it('a prompt longer than the prefill chunk runs as several extends', async () => {
      const s0 = cpu.createSequence();
      const s1 = gpu.createSequence();
      const prompt = ids(2100, 2, c.vocabSize);
      expect(relativeL2(await gpu.forward(s1, prompt, false), await cpu.forward(s0, prompt, false))).toBeLessThanOrEqual(tol);
      cpu.releaseSequence(s0);
      gpu.releaseSequence(s1);
    });

    it('decodeBatch of 3 sequences (padded to a bucket of 4) matches per-sequence decoding', async () => {
      const cs = [0, 1, 2].map(() => cpu.createSequence());
      const gs = [0, 1, 2].map(() => gpu.createSequence());
      for (let i = 0; i < 3; i++) {
        const prompt = ids(5 + 9 * i, 10 + i, c.vocabSize);
        await cpu.forward(cs[i], prompt, false);
        await gpu.forward(gs[i], prompt, false);
      }
      for (let step = 0; step < 3; step++) {
        const next = Int32Array.from([0, 1, 2], (i) => (step * 17 + i * 101) % c.vocabSize);
        const want = rows(await cpu.decodeBatch(Int32Array.from(cs), next), c.vocabSize);
        const got = rows(await gpu.decodeBatch(Int32Array.from(gs), next), c.vocabSize);
        for (let i = 0; i < 3; i++) expect(relativeL2(got[i], want[i])).toBeLessThanOrEqual(tol);
      }
      cs.forEach((s) => cpu.releaseSequence(s));
      gs.forEach((s) => gpu.releaseSequence(s));
    });

    // 5 sequences: the skinny decode GEMM; 32 and more: the wgmma kernel's decode layout (csrc/engine/cuda/forward.h).
    it.each([5, 32])('decode is batch invariant: each row of a decodeBatch of 5 equals its sequence decoded alone, bit for bit (engines of %i sequences)', async (slots) => {
      const alone = await native.createEngine(options(c, 0, { kvTokens: 512, maxSequences: slots, computeDType: dtype }));
      const batched = await native.createEngine(options(c, 0, { kvTokens: 512, maxSequences: slots, computeDType: dtype }));
      try {
        const prompts = [1, 9, 40, 77, 130].map((n, i) => ids(n, 30 + i, c.vocabSize));
        const a = prompts.map(() => alone.createSequence());
        const b = prompts.map(() => batched.createSequence());
        for (let i = 0; i < prompts.length; i++) {
          expect(await batched.forward(b[i], prompts[i], false)).toEqual(await alone.forward(a[i], prompts[i], false));
        }
        for (let step = 0; step < 4; step++) {
          const next = Int32Array.from(prompts, (_, i) => (step * 13 + i * 7 + 1) % c.vocabSize);
          const got = rows(await batched.decodeBatch(Int32Array.from(b), next), c.vocabSize);
          for (let i = 0; i < prompts.length; i++) expect(got[i]).toEqual(await alone.forward(a[i], next.subarray(i, i + 1), false));
        }
      } finally {
        alone.dispose();
        batched.dispose();
      }
    });

    it('the paged KV cache: blocks reused out of order, an extend over a cached prefix, a mixed batch', async () => {
      const small = { kvTokens: 512, maxSequences: 4, kvBlocks: 6 };
      const pagedCpu = await native.createEngine(options(c, -1, small));
      const pagedGpu = await native.createEngine(options(c, 0, { ...small, computeDType: dtype }));
      try {
        await expectPagedCacheMatches(pagedCpu, pagedGpu, c.vocabSize);
      } finally {
        pagedCpu.dispose();
        pagedGpu.dispose();
      }
    });
  });

  it('head_dim 32 (naive attention, no graph) matches too', async () => {
    const c = config({ dModel: 96, nHeads: 3, hasBias: false, clipQkv: 0 });
    const cpu = await native.createEngine(options(c, -1));
    const gpu = await native.createEngine(options(c, 0));
    try {
      const [s0, s1] = [cpu.createSequence(), gpu.createSequence()];
      const prompt = ids(20, 3, c.vocabSize);
      expect(relativeL2(await gpu.forward(s1, prompt, false), await cpu.forward(s0, prompt, false))).toBeLessThanOrEqual(2e-2);
      for (let step = 0; step < 3; step++) {
        const token = Int32Array.of(step + 1);
        expect(relativeL2(await gpu.forward(s1, token, false), await cpu.forward(s0, token, false))).toBeLessThanOrEqual(2e-2);
      }
      cpu.releaseSequence(s0);
      gpu.releaseSequence(s1);
      await expectPagedCacheMatches(cpu, gpu, c.vocabSize);
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
  });

  it('the 1B shape (random weights made on the GPU) matches the CPU engine', async () => {
    const c = config(SEED_1B);
    const cpu = await native.createEngine(options(c, -1, { kvTokens: 64, maxSequences: 1 }));
    const gpu = await native.createEngine(options(c, 0, { kvTokens: 64, maxSequences: 1 }));
    try {
      const memory = gpu.memory();
      expect(memory.weightBytes).toBeGreaterThan(2.6e9);
      expect(memory.kvCacheBytes).toBe(2 * 24 * 64 * 2048 * 2);
      console.log(`[1B] device memory: weights ${memory.weightBytes}, KV ${memory.kvCacheBytes}, workspace ${memory.workspaceBytes} bytes`);
      const [s0, s1] = [cpu.createSequence(), gpu.createSequence()];
      const prompt = ids(16, 4, c.vocabSize);
      const errors = [relativeL2(await gpu.forward(s1, prompt, false), await cpu.forward(s0, prompt, false))];
      for (let step = 0; step < 3; step++) {
        const token = Int32Array.of(1000 + step);
        errors.push(relativeL2(await gpu.forward(s1, token, false), await cpu.forward(s0, token, false)));
      }
      console.log(`[1B] relative L2 of logits vs CPU (prefill, 3 decode steps): ${errors.map((e) => e.toExponential(2)).join(', ')}`);
      for (const e of errors) expect(e).toBeLessThanOrEqual(2e-2);
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
  }, 600000);

  it('sequence calls answer at once while forwards run; a release mid-call takes effect when the call lands', async () => {
    const c = config(SEED_1B);
    const gpu = await native.createEngine(options(c, 0, { kvTokens: 2048, maxSequences: 7 }));
    try {
      const busy = Array.from({ length: 6 }, () => gpu.createSequence());
      const started = performance.now();
      const calls = Promise.allSettled(busy.map((seq, i) => gpu.forward(seq, ids(2048, i, c.vocabSize), false)));
      let settled = false;
      void calls.then(() => (settled = true));
      // Poll from the JS thread while the forwards run: release the last slot and take it again, read a length.
      let spare = gpu.createSequence();
      const stale = spare;
      let inCalls = 0;
      let polls = 0;
      while (!settled) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        const t0 = performance.now();
        gpu.releaseSequence(spare);
        spare = gpu.createSequence();
        gpu.sequenceLength(busy[0]);
        inCalls += performance.now() - t0;
        polls++;
      }
      const elapsed = performance.now() - started;
      console.log(`[threading] ${polls} polls over ${elapsed.toFixed(0)} ms of forwards took ${inCalls.toFixed(2)} ms`);
      expect(polls).toBeGreaterThan(5);
      expect(inCalls).toBeLessThan(0.2 * elapsed);
      expect(spare).not.toBe(stale);
      await expectCode(() => gpu.sequenceLength(stale), 'E_INVALID_ARGUMENT');

      // Released while its forward runs or waits: the call completes, or fails for the dead handle; either way the
      // slot is free once it has landed.
      const last = gpu.forward(busy[0], ids(16, 9, c.vocabSize), false);
      gpu.releaseSequence(busy[0]);
      await last.then(
        (logits) => expect(logits.length).toBe(c.vocabSize),
        (err: Error) => expect(err.message).toContain('[E_INVALID_ARGUMENT]'),
      );
      expect(gpu.createSequence()).toBeGreaterThanOrEqual(0);
    } finally {
      gpu.dispose();
    }
  }, 600000);

  it('reports context, token-range and slot errors, and out of memory at load, staying usable', async () => {
    const c = config();
    await expectCode(native.createEngine(options(c, 0, { kvTokens: 1 << 22, maxSequences: 1024 })), 'E_OUT_OF_MEMORY');
    const gpu = await native.createEngine(options(c, 0, { kvTokens: 16, maxSequences: 1 }));
    try {
      const seq = gpu.createSequence();
      await expectCode(() => gpu.createSequence(), 'E_OUT_OF_MEMORY');
      await expectCode(gpu.forward(seq, ids(17, 1, c.vocabSize), false), 'E_CONTEXT_LENGTH');
      await expectCode(gpu.forward(seq, Int32Array.of(c.vocabSize), false), 'E_TOKEN_RANGE');
      const logits = await gpu.forward(seq, ids(16, 1, c.vocabSize), false);
      expect(logits.length).toBe(c.vocabSize);
      expect(logits.every(Number.isFinite)).toBe(true);
      await expectCode(gpu.forward(seq, Int32Array.of(1), false), 'E_CONTEXT_LENGTH');
    } finally {
      gpu.dispose();
    }
  });
});
