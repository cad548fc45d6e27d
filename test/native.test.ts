/**
 * The native addon through lib/native.ts: the CPU reference engine's prefill ≡ decode ≡ decodeBatch paths (the
 * goldens run through the public API in golden-cpu.test.ts), weight loading (dtype conversion, range checks), error codes, and running off the JS thread.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, NativeEngine, NativeModelConfig, NativeTensorSource } from '../lib/native';
import { nativeEngineOptions, nativeModelConfig } from './helpers/native-config';

const native = loadNative();

const engineOptions = nativeEngineOptions;

function ids(n: number, vocab: number, salt = 0): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 37 + salt * 11 + 5) % vocab);
}

function row(logits: Float32Array, vocab: number, r: number): Float32Array {
  return logits.subarray(r * vocab, (r + 1) * vocab);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Same logits up to float rounding of a different summation grouping. */
function expectClose(actual: Float32Array, expected: Float32Array): void {
  expect(maxAbsDiff(actual, expected)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(expected)));
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toThrow(new RegExp(`^\\[${code}\\] `));
}

function expectThrowsCode(fn: () => unknown, code: string): void {
  expect(fn).toThrow(new RegExp(`^\\[${code}\\] `));
}

describe('addon', () => {
  test('buildInfo names the package version and whether CUDA is built in', () => {
    const info = native.buildInfo();
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(info.version).toBe(pkg.version);
    expect(typeof info.cuda).toBe('boolean');
  });

  test('deviceCount is a non-negative integer, 0 without CUDA', () => {
    const count = native.deviceCount();
    expect(Number.isInteger(count)).toBe(true);
    expect(count).toBeGreaterThanOrEqual(0);
    if (!native.buildInfo().cuda) expect(count).toBe(0);
  });

  test('loadNative is cached', () => {
    expect(loadNative()).toBe(native);
  });

  test('a CUDA device in a build without CUDA is E_DEVICE', async () => {
    if (native.buildInfo().cuda) return;
    await expectCode(native.createEngine(engineOptions(nativeModelConfig(), { device: 0 })), 'E_DEVICE');
  });

  test('malformed options reject with E_INVALID_ARGUMENT naming the field', async () => {
    const options = engineOptions(nativeModelConfig());
    await expect(native.createEngine({ ...options, kvTokens: 0 })).rejects.toThrow(/^\[E_INVALID_ARGUMENT\] options\.kvTokens/);
    const badConfig = { ...options.config, dModel: 'x' } as unknown as NativeModelConfig;
    await expect(native.createEngine({ ...options, config: badConfig })).rejects.toThrow(/config\.dModel/);
    await expectCode(native.createEngine({ ...options, config: nativeModelConfig({ dModel: 66 }) }), 'E_CONFIG');
  });
});

describe.each([
  ['4 heads, QK-LN, no bias', nativeModelConfig()],
  ['6 heads, biases, clip_qkv, logit scale', nativeModelConfig({ dModel: 96, nHeads: 6, hasBias: true, clipQkv: 0.05, logitScale: 0.5 })],
  ['3 heads, no ALiBi, no QK-LN', nativeModelConfig({ dModel: 48, nHeads: 3, qkLn: false, alibiSlopes: new Float32Array(0) })],
])('random-weight CPU engine (%s)', (_title, config) => {
  const vocab = config.vocabSize;
  let engine: NativeEngine;

  beforeAll(async () => {
    engine = await native.createEngine(engineOptions(config));
  });
  afterAll(() => engine.dispose());

  test('a prompt with allLogits equals feeding it token by token', async () => {
    const prompt = ids(13, vocab);
    const whole = engine.createSequence();
    const all = await engine.forward(whole, prompt, true);
    expect(all.length).toBe(prompt.length * vocab);
    expect(engine.sequenceLength(whole)).toBe(prompt.length);

    const stepwise = engine.createSequence();
    for (let i = 0; i < prompt.length; i++) {
      const logits = await engine.forward(stepwise, prompt.subarray(i, i + 1), false);
      expectClose(logits, row(all, vocab, i));
    }
    const last = engine.createSequence();
    expectClose(await engine.forward(last, prompt, false), row(all, vocab, prompt.length - 1));
    for (const seq of [whole, stepwise, last]) engine.releaseSequence(seq);
  });

  test('decodeBatch of 3 sequences equals their solo forwards', async () => {
    const prompts = [ids(5, vocab, 1), ids(9, vocab, 2), ids(2, vocab, 3)];
    const next = Int32Array.from([3, 17, 42]);
    const batched = prompts.map(() => engine.createSequence());
    const solo: Float32Array[] = [];
    for (let i = 0; i < prompts.length; i++) {
      await engine.forward(batched[i], prompts[i], false);
      const seq = engine.createSequence();
      await engine.forward(seq, prompts[i], false);
      solo.push(await engine.forward(seq, next.subarray(i, i + 1), false));
      engine.releaseSequence(seq);
    }
    const logits = await engine.decodeBatch(Int32Array.from(batched), next);
    expect(logits.length).toBe(3 * vocab);
    for (let i = 0; i < prompts.length; i++) {
      expectClose(row(logits, vocab, i), solo[i]);
      expect(engine.sequenceLength(batched[i])).toBe(prompts[i].length + 1);
    }
    for (const seq of batched) engine.releaseSequence(seq);
  });
});

describe('CPU engine behaviour', () => {
  const config = nativeModelConfig();
  const vocab = config.vocabSize;

  test('a prompt longer than one native pass (256 tokens) matches prefill in two calls', async () => {
    const engine = await native.createEngine(engineOptions(config));
    const prompt = ids(290, vocab);
    const a = engine.createSequence();
    const whole = await engine.forward(a, prompt, true);
    const b = engine.createSequence();
    await engine.forward(b, prompt.subarray(0, 100), false);
    const rest = await engine.forward(b, prompt.subarray(100), true);
    expectClose(rest, whole.subarray(100 * vocab));
    engine.dispose();
  });

  test('results do not depend on the thread count', async () => {
    const prompt = ids(40, vocab);
    const run = async (threads: number) => {
      const engine = await native.createEngine(engineOptions(config, { threads }));
      const logits = await engine.forward(engine.createSequence(), prompt, true);
      engine.dispose();
      return logits;
    };
    expect(await run(1)).toEqual(await run(0));
  });

  test('the same seed gives the same weights; another seed others', async () => {
    const run = async (seed: number) => {
      const engine = await native.createEngine(engineOptions(config, { seed }));
      const logits = await engine.forward(engine.createSequence(), ids(4, vocab), false);
      engine.dispose();
      return logits;
    };
    const first = await run(3);
    expect(await run(3)).toEqual(first);
    expect(maxAbsDiff(await run(4), first)).toBeGreaterThan(0);
  });

  test('memory() reports weights, KV cache and workspace', async () => {
    const engine = await native.createEngine(engineOptions(config, { kvTokens: 50, maxSequences: 3 }));
    const d = config.dModel;
    const perLayer = 3 * d * d + d * d + 2 * d * config.dFf + 2 * d /* ln_1, ln_2 */ + 2 * d; /* q_ln, k_ln */
    const params = config.vocabSize * d + config.nLayers * perLayer + d;
    const memory = engine.memory();
    expect(memory.weightBytes).toBe(4 * params);
    // 3 sequences of up to 50 tokens: one block of 64 tokens each (K and V, fp32).
    expect(memory.kvCacheBytes).toBe(2 * 4 * config.nLayers * 3 * 64 * d);
    await engine.forward(engine.createSequence(), ids(10, vocab), false);
    expect(engine.memory().workspaceBytes).toBeGreaterThan(0);
    engine.dispose();
  });

  test('the paged KV cache: blocks follow the sequences, and results do not depend on which blocks a sequence got', async () => {
    const engine = await native.createEngine(engineOptions(config, { kvTokens: 300, maxSequences: 4, kvBlocks: 6 }));
    const fresh = await native.createEngine(engineOptions(config, { kvTokens: 300, maxSequences: 1 }));
    try {
      expect(engine.kvBlocks()).toEqual({ total: 6, free: 6, blockTokens: 64 });
      const a = engine.createSequence();
      const b = engine.createSequence();
      await engine.forward(a, ids(70, vocab, 1), false);
      await engine.forward(b, ids(10, vocab, 2), false);
      expect(engine.kvBlocks().free).toBe(3); // 2 + 1 blocks
      engine.releaseSequence(a);
      expect(engine.kvBlocks().free).toBe(5);

      // c takes a's two freed blocks and two never used: its rows are not in one piece, nor in order.
      const c = engine.createSequence();
      const prompt = ids(200, vocab, 3);
      const alone = fresh.createSequence();
      expect(await engine.forward(c, prompt, true)).toEqual(await fresh.forward(alone, prompt, true));
      expect(engine.kvBlocks().free).toBe(1);
      const stepped = await engine.decodeBatch(Int32Array.of(b, c), Int32Array.of(3, 7));
      expect(stepped.subarray(vocab)).toEqual(await fresh.forward(alone, Int32Array.of(7), false));

      // A call that needs more blocks than are free fails before it runs and takes none.
      const d = engine.createSequence();
      await expect(engine.forward(d, ids(130, vocab, 4), false)).rejects.toThrow(
        /^\[E_OUT_OF_MEMORY\] the KV cache is full: this call needs 3 more blocks of 64 tokens, 1 of 6 are free/,
      );
      expect(engine.sequenceLength(d)).toBe(0);
      expect(engine.kvBlocks().free).toBe(1);
      engine.releaseSequence(c);
      await engine.forward(d, ids(130, vocab, 4), false);
      expect(engine.kvBlocks().free).toBe(2);
    } finally {
      engine.dispose();
      fresh.dispose();
    }
  });

  test('errors carry codes and leave the sequence as it was', async () => {
    const engine = await native.createEngine(engineOptions(config, { kvTokens: 8, maxSequences: 2 }));
    const seq = engine.createSequence();
    await engine.forward(seq, ids(3, vocab), false);

    await expectCode(engine.forward(seq, Int32Array.from([1, vocab]), false), 'E_TOKEN_RANGE');
    await expectCode(engine.forward(seq, Int32Array.from([-1]), false), 'E_TOKEN_RANGE');
    await expectCode(engine.forward(seq, ids(6, vocab), false), 'E_CONTEXT_LENGTH');
    await expectCode(engine.forward(seq, new Int32Array(0), false), 'E_INVALID_ARGUMENT');
    expect(engine.sequenceLength(seq)).toBe(3);
    await engine.forward(seq, ids(5, vocab), false);
    await expectCode(engine.decodeBatch(Int32Array.from([seq]), Int32Array.from([1])), 'E_CONTEXT_LENGTH');

    const other = engine.createSequence();
    expectThrowsCode(() => engine.createSequence(), 'E_OUT_OF_MEMORY');
    await expectCode(engine.decodeBatch(Int32Array.from([other, other]), Int32Array.from([1, 2])), 'E_INVALID_ARGUMENT');
    await expectCode(engine.decodeBatch(Int32Array.from([other]), Int32Array.from([1, 2])), 'E_INVALID_ARGUMENT');
    engine.releaseSequence(other);
    expectThrowsCode(() => engine.sequenceLength(other), 'E_INVALID_ARGUMENT');
    expectThrowsCode(() => engine.releaseSequence(other), 'E_INVALID_ARGUMENT');
    await expectCode(engine.forward(99, ids(1, vocab), false), 'E_INVALID_ARGUMENT');
    await expectCode(engine.forward(seq, [1, 2] as unknown as Int32Array, false), 'E_INVALID_ARGUMENT');
    expect(engine.sequenceLength(engine.createSequence())).toBe(0);

    const EngineClass = engine.constructor as new () => NativeEngine;
    expectThrowsCode(() => new EngineClass(), 'E_INVALID_ARGUMENT');

    engine.dispose();
    engine.dispose();
    expectThrowsCode(() => engine.createSequence(), 'E_DISPOSED');
    expectThrowsCode(() => engine.memory(), 'E_DISPOSED');
    await expectCode(engine.forward(seq, ids(1, vocab), false), 'E_DISPOSED');
    await expectCode(engine.decodeBatch(Int32Array.from([seq]), ids(1, vocab)), 'E_DISPOSED');
  });

  test('a KV cache past the address space is E_OUT_OF_MEMORY naming its bytes, and later engines load', async () => {
    // 1024 sequences × 2^24 tokens × 64 layers × 64 floats × 4 bytes = 256 TiB per cache: more than the 128 TiB a
    // process can map, so the allocation fails whatever the machine's overcommit policy.
    const huge = nativeModelConfig({ nLayers: 64 });
    const bytes = 1024 * 2 ** 24 * 64 * 64 * 4;
    await expect(native.createEngine(engineOptions(huge, { kvTokens: 2 ** 24, maxSequences: 1024 }))).rejects.toThrow(
      `[E_OUT_OF_MEMORY] cannot allocate ${(bytes / 2 ** 30).toFixed(2)} GiB (${bytes} bytes) of host memory for the KV cache's keys (${2 ** 28} blocks × 64 tokens × 64 layers × d_model 64 × 4 bytes; lower kvCacheTokens, or maxContext or maxSequences)`,
    );
    const engine = await native.createEngine(engineOptions(config));
    expect((await engine.forward(engine.createSequence(), ids(5, vocab), false)).length).toBe(vocab);
    engine.dispose();
  });

  test('dispose() during a forward lets queued calls finish, then frees', async () => {
    const engine = await native.createEngine(engineOptions(config));
    const seq = engine.createSequence();
    const first = engine.forward(seq, ids(200, vocab), false);
    const second = engine.forward(seq, ids(1, vocab), false);
    engine.dispose();
    expect((await first).length).toBe(vocab);
    expect((await second).length).toBe(vocab);
    await expectCode(engine.forward(seq, ids(1, vocab), false), 'E_DISPOSED');
  });

  test('releasing a sequence during its call frees the slot when the call ends; stale handles stay invalid', async () => {
    const big = nativeModelConfig({ dModel: 256, nHeads: 4, nLayers: 4, dFf: 1024, vocabSize: 1000 });
    const engine = await native.createEngine(engineOptions(big, { kvTokens: 512, maxSequences: 1 }));
    const seq = engine.createSequence();
    const running = engine.forward(seq, ids(512, big.vocabSize), false);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the forward is under way (it takes ~1 s)
    engine.releaseSequence(seq);
    expectThrowsCode(() => engine.sequenceLength(seq), 'E_INVALID_ARGUMENT');
    expectThrowsCode(() => engine.createSequence(), 'E_OUT_OF_MEMORY');
    expect((await running).length).toBe(big.vocabSize);

    const next = engine.createSequence();
    expect(next).not.toBe(seq);
    expect(engine.sequenceLength(next)).toBe(0);
    // A call queued for the released handle must not touch the slot's new sequence.
    await expectCode(engine.forward(seq, ids(1, big.vocabSize), false), 'E_INVALID_ARGUMENT');
    expect(engine.sequenceLength(next)).toBe(0);
    engine.dispose();
  });

  test('the event loop keeps running during a long forward', async () => {
    const big = nativeModelConfig({ dModel: 256, nHeads: 4, nLayers: 4, dFf: 1024, vocabSize: 1000 });
    const engine = await native.createEngine(engineOptions(big, { kvTokens: 512 }));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = performance.now();
    await engine.forward(engine.createSequence(), ids(512, big.vocabSize), false);
    const elapsed = performance.now() - started;
    clearInterval(timer);
    engine.dispose();
    expect(elapsed).toBeGreaterThan(50);
    expect(ticks).toBeGreaterThanOrEqual(Math.min(10, Math.floor(elapsed / 20)));
  });

  test('an engine dropped without dispose() survives its running call and is collected', () => {
    const script = `
      const addon = require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(path.join(__dirname, '..'))});
      const options = ${JSON.stringify({ ...engineOptions(config), config: { ...config, alibiSlopes: [] } })};
      options.config.alibiSlopes = new Float32Array(0);
      let collected = 0;
      const registry = new FinalizationRegistry(() => collected++);
      async function startForward() {
        const engine = await addon.createEngine(options);
        registry.register(engine, 0);
        return engine.forward(engine.createSequence(), Int32Array.from({ length: 100 }, (_, i) => i), false);
      }
      (async () => {
        for (let i = 0; i < 8; i++) {
          const pending = startForward();
          const logits = await Promise.race([pending, new Promise((r) => setImmediate(() => { global.gc(); r(null); }))]);
          if ((logits ?? (await pending)).length !== options.config.vocabSize) throw new Error('bad logits');
        }
        for (let i = 0; i < 5 && collected === 0; i++) { global.gc(); await new Promise((r) => setTimeout(r, 20)); }
        console.log(JSON.stringify({ collected }));
      })().catch((e) => { console.error(e); process.exit(1); });
    `;
    const res = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60000 });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(JSON.parse(res.stdout).collected).toBeGreaterThan(0);
  });
});

describe('weight loading', () => {
  const config = nativeModelConfig({ dModel: 32, nHeads: 2, vocabSize: 50, hasBias: true });
  let dir: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-mpt-native-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Canonical tensors of `config` with their shapes. */
  function shapes(c: NativeModelConfig): Array<[string, number[]]> {
    const d = c.dModel;
    const out: Array<[string, number[]]> = [['wte.weight', [c.vocabSize, d]]];
    const norm = (name: string) => {
      out.push([`${name}.weight`, [d]]);
      if (c.hasBias) out.push([`${name}.bias`, [d]]);
    };
    const linear = (name: string, rows: number, cols: number) => {
      out.push([`${name}.weight`, [rows, cols]]);
      if (c.hasBias) out.push([`${name}.bias`, [rows]]);
    };
    for (let i = 0; i < c.nLayers; i++) {
      const p = `blocks.${i}.`;
      norm(`${p}ln_1`);
      linear(`${p}attn.Wqkv`, 3 * d, d);
      if (c.qkLn) {
        norm(`${p}attn.q_ln`);
        norm(`${p}attn.k_ln`);
      }
      linear(`${p}attn.out_proj`, d, d);
      norm(`${p}ln_2`);
      linear(`${p}mlp.up`, c.dFf, d);
      linear(`${p}mlp.down`, d, c.dFf);
    }
    norm('ln_f');
    return out;
  }

  /**
   * Writes the same values as F32 and as `dtype` (values chosen exactly representable in it, subnormals of fp16
   * included) to two files, each starting with a few junk bytes, and returns both tensor lists.
   */
  function writeCheckpoints(dtype: 'F16' | 'BF16'): [NativeTensorSource[], NativeTensorSource[]] {
    let state = 12345;
    const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const encodings: Array<{ bits: number; value: number }> = [];
    const f32 = new DataView(new ArrayBuffer(4));
    const sample = () => {
      const sign = random() < 0.5 ? 0x8000 : 0;
      if (dtype === 'F16') {
        const exponent = Math.floor(random() * 15); // 0 (subnormal) .. 14: |x| < 1
        const mantissa = Math.floor(random() * 1024);
        const magnitude = exponent === 0 ? mantissa * 2 ** -24 : (1 + mantissa / 1024) * 2 ** (exponent - 15);
        return { bits: sign | (exponent << 10) | mantissa, value: sign ? -magnitude : magnitude };
      }
      const exponent = 120 + Math.floor(random() * 7);
      const bits = sign | (exponent << 7) | Math.floor(random() * 128);
      f32.setUint32(0, bits << 16);
      return { bits, value: f32.getFloat32(0) };
    };
    const wide: NativeTensorSource[] = [];
    const narrow: NativeTensorSource[] = [];
    const wideChunks: Buffer[] = [Buffer.from('junk!!!!')];
    const narrowChunks: Buffer[] = [Buffer.from('junk')];
    let wideOffset = 8;
    let narrowOffset = 4;
    for (const [name, shape] of shapes(config)) {
      const n = shape.reduce((a, b) => a * b, 1);
      const wideBytes = Buffer.alloc(4 * n);
      const narrowBytes = Buffer.alloc(2 * n);
      for (let i = 0; i < n; i++) {
        const s = sample();
        encodings.push(s);
        wideBytes.writeFloatLE(s.value, 4 * i);
        narrowBytes.writeUInt16LE(s.bits, 2 * i);
      }
      wide.push({ name, file: path.join(dir, `${dtype}-wide.bin`), offset: wideOffset, bytes: 4 * n, dtype: 'F32', shape });
      narrow.push({ name, file: path.join(dir, `${dtype}-narrow.bin`), offset: narrowOffset, bytes: 2 * n, dtype, shape });
      wideChunks.push(wideBytes);
      narrowChunks.push(narrowBytes);
      wideOffset += 4 * n;
      narrowOffset += 2 * n;
    }
    fs.writeFileSync(path.join(dir, `${dtype}-wide.bin`), Buffer.concat(wideChunks));
    fs.writeFileSync(path.join(dir, `${dtype}-narrow.bin`), Buffer.concat(narrowChunks));
    return [wide, narrow];
  }

  async function logitsOf(tensors: NativeTensorSource[]): Promise<Float32Array> {
    const engine = await native.createEngine(engineOptions(config, { randomWeights: false, tensors }));
    const logits = await engine.forward(engine.createSequence(), ids(6, config.vocabSize), true);
    engine.dispose();
    return logits;
  }

  test.each(['F16', 'BF16'] as const)('%s weights are converted to fp32 exactly', async (dtype) => {
    const [wide, narrow] = writeCheckpoints(dtype);
    expect(await logitsOf(narrow)).toEqual(await logitsOf(wide));
  });

  test('loading keeps one copy of the weights resident: peak RSS grows by the fp32 weights, not twice that', () => {
    const big = nativeModelConfig({ dModel: 512, nHeads: 8, nLayers: 8, dFf: 2048, vocabSize: 8192 });
    const file = path.join(dir, 'sparse.bin');
    const tensors: NativeTensorSource[] = [];
    let offset = 0;
    for (const [name, shape] of shapes(big)) {
      const bytes = 4 * shape.reduce((a, b) => a * b, 1);
      tensors.push({ name, file, offset, bytes, dtype: 'F32', shape });
      offset += bytes;
    }
    fs.closeSync(fs.openSync(file, 'w'));
    fs.truncateSync(file, offset); // a sparse file of zeros: no disk needed, but its pages count when mapped
    const script = `
      const addon = require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(path.join(__dirname, '..'))});
      const options = ${JSON.stringify({ ...engineOptions(big), randomWeights: false, tensors, kvTokens: 16, config: { ...big, alibiSlopes: [] } })};
      options.config.alibiSlopes = new Float32Array(${JSON.stringify([...big.alibiSlopes])});
      const kib = (field) => {
        const lines = require('fs').readFileSync('/proc/self/status', 'utf8').split(String.fromCharCode(10));
        return parseInt(lines.find((line) => line.startsWith(field + ':')).slice(field.length + 1), 10) * 1024;
      };
      const before = kib('VmRSS');
      addon.createEngine(options).then((engine) => {
        console.log(JSON.stringify({ growth: kib('VmHWM') - before, weightBytes: engine.memory().weightBytes }));
      });
    `;
    const res = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 });
    expect(res.stderr).toBe('');
    const { growth, weightBytes } = JSON.parse(res.stdout) as { growth: number; weightBytes: number };
    expect(weightBytes).toBe(offset);
    expect(growth).toBeLessThan(1.25 * weightBytes);
  });

  test('checkpoint problems that could corrupt memory are E_CHECKPOINT naming the tensor', async () => {
    const [wide] = writeCheckpoints('F16');
    const change = (name: string, patch: Partial<NativeTensorSource>) =>
      wide.map((t) => (t.name === name ? { ...t, ...patch } : t));
    const load = (tensors: NativeTensorSource[]) =>
      native.createEngine(engineOptions(config, { randomWeights: false, tensors }));
    const size = fs.statSync(wide[0].file).size;
    await expect(load(change('ln_f.bias', { offset: size - 8 }))).rejects.toThrow(/^\[E_CHECKPOINT\] tensor ln_f\.bias .*past the end/);
    await expect(load(change('wte.weight', { shape: [config.vocabSize, 31] }))).rejects.toThrow(/^\[E_CHECKPOINT\] tensor wte\.weight has shape/);
    await expect(load(change('blocks.0.ln_1.weight', { bytes: 4 }))).rejects.toThrow(/^\[E_CHECKPOINT\] tensor blocks\.0\.ln_1\.weight is 4 bytes/);
    await expect(load(wide.filter((t) => t.name !== 'blocks.1.mlp.up.bias'))).rejects.toThrow(/^\[E_CHECKPOINT\] checkpoint has no tensor blocks\.1\.mlp\.up\.bias/);
    await expect(load(change('ln_f.weight', { file: path.join(dir, 'missing.bin') }))).rejects.toThrow(/^\[E_CHECKPOINT\] cannot open/);
  });
});
