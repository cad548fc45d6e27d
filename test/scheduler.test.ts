/**
 * The scheduler on the real CPU engine: concurrent greedy requests batched together give their solo outputs
 * token for token; the queue's limit and timeout; abort and break-out free the slot and its KV blocks at once.
 */
import { parseConfig } from '../lib/config';
import { FlashMptError } from '../lib/errors';
import { createRandomModel, GenerateResult, LoadModelOptions, Model } from '../lib/model';
import type { NativeEngine } from '../lib/native';
import { parseGenerateOptions, Sampler } from '../lib/sampling';
import { Scheduler, SchedulerOptions } from '../lib/scheduler/scheduler';
import { within } from './helpers/time';

const SHAPE = {
  model_type: 'mpt', d_model: 64, n_heads: 4, n_layers: 2, expansion_ratio: 4, max_seq_len: 128, vocab_size: 1024,
  no_bias: true, attn_config: { alibi: true, qk_ln: true },
};
const config = parseConfig(SHAPE, 'scheduler test shape');

function smallModel(options: LoadModelOptions = {}): Promise<Model> {
  return createRandomModel(config, { device: 'cpu', seed: 7, ...options });
}

function promptOf(length: number, salt: number): { ids: number[] } {
  return { ids: Array.from({ length }, (_, i) => (i * 131 + salt * 17 + 3) % config.vocabSize) };
}

/** The engine gives a released sequence's blocks back once a step still running for it has landed. */
async function waitForFreeBlocks(model: Model): Promise<void> {
  for (const deadline = Date.now() + 10_000; model.schedulerMetrics().kvBlocksInUse > 0 && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof FlashMptError) return err.code;
    throw err;
  }
  return 'resolved';
}

/** Holds a sequence slot of `model`: a stream suspended after its first token; return() frees it. */
async function holdSlot(model: Model): Promise<AsyncGenerator<unknown, unknown, undefined>> {
  const held = model.stream(promptOf(10, 9), { maxTokens: 50, temperature: 0 });
  await held.next();
  return held;
}

/**
 * The real engine behind a proxy that holds each decode call until go(): before it reaches the engine ('start': a
 * call still waiting in the binding's queue) or after it ran ('landing': a step that has not landed yet).
 */
function heldSteps(engine: NativeEngine, hold: 'start' | 'landing'): { engine: NativeEngine; calls: () => number; go: () => void } {
  let calls = 0;
  let go: () => void = () => {};
  const gate = new Promise<void>((resolve) => (go = resolve));
  const held = new Proxy(engine, {
    get(target, name) {
      const value = Reflect.get(target, name);
      if (typeof value !== 'function') return value;
      if (typeof name !== 'string' || !name.startsWith('decode')) return value.bind(target);
      return async (...args: unknown[]) => {
        calls++;
        if (hold === 'start') await gate;
        const result = await value.apply(target, args);
        if (hold === 'landing') await gate;
        return result;
      };
    },
  });
  return { engine: held, calls: () => calls, go };
}

/** A scheduler of its own over `engine` with `slots` sequence slots, and greedy 4-token requests on it. */
function ownScheduler(engine: NativeEngine, slots: number, options: Partial<SchedulerOptions>) {
  const blocks = engine.kvBlocks();
  const capacity = { maxSequences: slots, kvBlocks: blocks.total, kvBlockTokens: blocks.blockTokens, sampleableVocab: config.vocabSize };
  const defaults = { maxQueue: 0, queueTimeoutMs: 0, prefillChunkTokens: 512, prefillTokensPerStep: 2048, candidates: 64, greedyChainSteps: 1 };
  const scheduler = new Scheduler(engine, capacity, { ...defaults, ...options });
  const open = (salt: number) => {
    const sampler = new Sampler(parseGenerateOptions({ temperature: 0, maxTokens: 4 }), { sampleableVocabSize: config.vocabSize });
    return scheduler.open(Int32Array.from(promptOf(6, salt).ids), { maxTokens: 4, sampler, signal: undefined });
  };
  return { scheduler, open };
}

describe('batching on the CPU engine', () => {
  let model: Model;
  beforeAll(async () => {
    model = await smallModel({ maxSequences: 16 });
  });
  afterAll(() => model?.dispose());

  test('16 concurrent greedy requests of different lengths equal their solo outputs token for token', async () => {
    const requests = Array.from({ length: 16 }, (_, i) => ({
      prompt: promptOf(1 + ((i * 7) % 40), i),
      options: { maxTokens: 12 + ((i * 5) % 13), temperature: 0 },
    }));
    const solo: GenerateResult[] = [];
    for (const r of requests) solo.push(await model.generate(r.prompt, r.options));

    // Count the rows of each decode step (the addon's methods are read-only, so shadow them on the instance).
    const engine = model.live();
    const decodeSteps = ['decodeBatch', 'decodeBatchCandidates', 'decodeGreedy'] as const;
    const batchSizes: number[] = [];
    for (const name of decodeSteps) {
      const step = (engine[name] as (seqs: Int32Array, ...rest: unknown[]) => unknown).bind(engine);
      Object.defineProperty(engine, name, {
        configurable: true,
        value: (seqs: Int32Array, ...rest: unknown[]) => {
          batchSizes.push(seqs.length);
          return step(seqs, ...rest);
        },
      });
    }
    try {
      const together = await Promise.all(requests.map((r) => model.generate(r.prompt, r.options)));
      together.forEach((result, i) => {
        expect(result.tokenIds).toEqual(solo[i].tokenIds);
        expect(result.finishReason).toBe('length');
        expect(result.tokenIds).toHaveLength(requests[i].options.maxTokens);
      });
    } finally {
      for (const name of decodeSteps) delete (engine as Partial<typeof engine>)[name];
    }
    // The requests really shared steps: most of them decoded in one batch at the peak.
    expect(Math.max(...batchSizes)).toBeGreaterThanOrEqual(12);
    expect(new Set(solo.map((r) => r.tokenIds.join(','))).size).toBeGreaterThan(1);
  });

  test('stream and generate give the same tokens while other requests run beside them', async () => {
    const options = { maxTokens: 20, temperature: 0.8, seed: 5 };
    const alone = await model.generate(promptOf(9, 1), options);
    const beside = Array.from({ length: 6 }, (_, i) => model.generate(promptOf(3 + i, 2 + i), { maxTokens: 15, temperature: 0 }));
    const streamed: number[] = [];
    for await (const chunk of model.stream(promptOf(9, 1), options)) if (chunk.tokenId !== null) streamed.push(chunk.tokenId);
    await Promise.all(beside);
    expect(streamed).toEqual(alone.tokenIds);
  });

  test('a prompt prefilled in chunks gives the logits of one call', async () => {
    const chunked = await smallModel({ prefillChunkTokens: 5 });
    try {
      const ids = promptOf(23, 4).ids;
      const whole = await model.logits(ids);
      const parts = await chunked.logits(ids);
      expect(parts.length).toBe(whole.length);
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < whole.length; i++) {
        worst = Math.max(worst, Math.abs(parts[i] - whole[i]));
        scale = Math.max(scale, Math.abs(whole[i]));
      }
      expect(worst).toBeLessThanOrEqual(1e-5 * scale);
      const options = { maxTokens: 10, temperature: 0 };
      expect((await chunked.generate({ ids }, options)).tokenIds).toEqual((await model.generate({ ids }, options)).tokenIds);
    } finally {
      await chunked.dispose();
    }
  });

  test('metrics count the blocks of the paged KV cache the engine holds (64 tokens each)', async () => {
    const idle = model.schedulerMetrics();
    // 16 sequences at the full context of 128 tokens: 2 blocks each by default.
    expect(idle).toMatchObject({ queueLength: 0, runningSequences: 0, kvBlocksInUse: 0, kvBlockTokens: 64, kvBlocksTotal: 16 * 2 });
    const stream: AsyncGenerator<unknown, unknown> = model.stream(promptOf(40, 3), { maxTokens: 30, temperature: 0 });
    await stream.next();
    const busy = model.schedulerMetrics();
    expect(busy.runningSequences).toBe(1);
    expect(busy.kvBlocksInUse).toBe(1); // 40 prompt tokens, or 41 once the queued step ran
    await stream.return(undefined);
    expect(model.schedulerMetrics().runningSequences).toBe(0);
    await waitForFreeBlocks(model);
    expect(model.schedulerMetrics()).toMatchObject({ runningSequences: 0, kvBlocksInUse: 0 });
    expect(busy.generatedTokensTotal).toBeGreaterThan(idle.generatedTokensTotal);
  });
});

describe('a KV budget smaller than every sequence at full context (kvCacheTokens)', () => {
  test('short requests share it, each admitted when its prompt + maxTokens fit; one that never fits is refused', async () => {
    // 4 blocks of 64 tokens for 8 sequence slots of 128 tokens.
    const small = await smallModel({ maxSequences: 8, kvCacheTokens: 256 });
    try {
      expect(small.schedulerMetrics()).toMatchObject({ kvBlocksTotal: 4, kvBlockTokens: 64 });
      const options = { maxTokens: 20, temperature: 0, ignoreEos: true };
      const prompts = Array.from({ length: 6 }, (_, i) => promptOf(30, 10 + i));
      const alone: number[][] = [];
      for (const p of prompts) alone.push((await small.generate(p, options)).tokenIds);
      // 50 tokens each: one block, so 4 run at once and 2 wait for blocks, not slots.
      const streams = prompts.map((p) => small.stream(p, options));
      const firstSteps = streams.map((s) => s.next());
      await Promise.all(firstSteps.slice(0, 4));
      expect(small.schedulerMetrics()).toMatchObject({ runningSequences: 4, queueLength: 2, kvBlocksInUse: 4 });
      const drain = async (stream: (typeof streams)[number], firstStep: (typeof firstSteps)[number]) => {
        const tokens: number[] = [];
        for (let step = await firstStep; !step.done; step = await stream.next()) if (step.value.tokenId !== null) tokens.push(step.value.tokenId);
        return tokens;
      };
      const together = await Promise.all(streams.map((s, i) => drain(s, firstSteps[i])));
      expect(together).toEqual(alone);
      expect(small.schedulerMetrics()).toMatchObject({ runningSequences: 0, queueLength: 0, kvBlocksInUse: 0 });
      expect(await codeOf(small.generate(promptOf(100, 1), { maxTokens: 200 }))).toBe('E_CONTEXT_LENGTH');
    } finally {
      await small.dispose();
    }
  });
});

describe('queue and release', () => {
  let model: Model;
  beforeAll(async () => {
    model = await smallModel({ maxSequences: 1, maxQueue: 1, queueTimeoutMs: 0 });
  });
  afterAll(() => model?.dispose());

  test('a request beyond maxQueue gets E_QUEUE_FULL at once; the queued one runs when the slot frees', async () => {
    const held = await holdSlot(model);
    const queued = model.generate(promptOf(4, 1), { maxTokens: 3, temperature: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(model.schedulerMetrics().queueLength).toBe(1);
    expect(await codeOf(model.generate(promptOf(4, 2), { maxTokens: 3 }))).toBe('E_QUEUE_FULL');
    await held.return(undefined);
    expect((await queued).tokenIds).toHaveLength(3);
  });

  test('a slot released while its step runs takes the next request even with maxQueue 0; one more is refused', async () => {
    const steps = heldSteps(model.live(), 'landing');
    const { scheduler, open } = ownScheduler(steps.engine, 1, { candidates: 0 });
    try {
      const first = open(1);
      first.accept(await first.next());
      const dropped = first.next();
      while (steps.calls() === 0) await new Promise((resolve) => setImmediate(resolve));
      first.release();
      expect(await codeOf(dropped)).toBe('E_ABORTED');
      const next = open(2);
      expect(() => open(3)).toThrow(expect.objectContaining({ code: 'E_QUEUE_FULL' }));
      expect(scheduler.metrics()).toMatchObject({ queueLength: 1, runningSequences: 0 });
      steps.go();
      expect(typeof (await next.next())).toBe('number');
      next.release();
    } finally {
      scheduler.close();
    }
  });

  // The loop stops when its prefill round ran nothing and no row decodes. A request opened, or a slot freed for a
  // queued one, while it awaited that round (wake() then found the loop running) must keep it going: the round is
  // wrapped to do just that at that moment.
  test.each([
    ['a request opened', false],
    ['a slot freed for a queued request', true],
  ])('%s while the loop decides to stop is served (no lost wake-up)', async (_, queued) => {
    const { scheduler, open } = ownScheduler(model.live(), 1, { maxQueue: 1 });
    const internals = scheduler as unknown as { prefillRound: () => Promise<boolean> };
    const round = internals.prefillRound.bind(scheduler);
    const first = open(1);
    let late: ReturnType<Scheduler['open']> | null = queued ? open(2) : null;
    let armed = false;
    internals.prefillRound = async () => {
      const ran = await round();
      if (!ran && armed) {
        armed = false;
        if (queued) first.release();
        else late = open(2);
      }
      return ran;
    };
    try {
      expect(typeof (await first.next())).toBe('number');
      if (queued) expect(scheduler.metrics().queueLength).toBe(1);
      else first.release();
      armed = true;
      while (armed) await new Promise((resolve) => setImmediate(resolve));
      expect(typeof (await within(late!.next(), 5000, () => 'never served'))).toBe('number');
      late!.release();
    } finally {
      scheduler.close();
    }
  });

  test('a sequence leaving while a step for its batch waits in the engine queue does not fail the others', async () => {
    const two = await smallModel({ maxSequences: 2 });
    const steps = heldSteps(two.live(), 'start');
    const { scheduler, open } = ownScheduler(steps.engine, 2, {});
    try {
      const [leaving, staying] = [open(1), open(2)];
      for (const sequence of [leaving, staying]) sequence.accept(await sequence.next());
      const dropped = leaving.next();
      const kept = staying.next();
      while (steps.calls() === 0) await new Promise((resolve) => setImmediate(resolve));
      leaving.release();
      steps.go();
      expect(await codeOf(dropped)).toBe('E_ABORTED');
      expect(typeof (await kept)).toBe('number');
      staying.release();
      await waitForFreeBlocks(two);
      expect(two.schedulerMetrics().kvBlocksInUse).toBe(0);
    } finally {
      scheduler.close();
      await two.dispose();
    }
  });

  test('a request waiting longer than queueTimeoutMs gets E_QUEUE_FULL', async () => {
    const timed = await smallModel({ maxSequences: 1, queueTimeoutMs: 50 });
    try {
      const held = await holdSlot(timed);
      const started = performance.now();
      expect(await codeOf(timed.generate(promptOf(4, 1), { maxTokens: 3 }))).toBe('E_QUEUE_FULL');
      expect(performance.now() - started).toBeGreaterThanOrEqual(45);
      expect(timed.schedulerMetrics().queueLength).toBe(0);
      await held.return(undefined);
    } finally {
      await timed.dispose();
    }
  });

  test('aborting a running sequence frees its slot at once and its KV blocks when its last step lands', async () => {
    const controller = new AbortController();
    const stream = model.stream(promptOf(20, 5), { maxTokens: 50, temperature: 0, signal: controller.signal });
    await stream.next();
    expect(model.schedulerMetrics().kvBlocksInUse).toBeGreaterThan(0);
    controller.abort();
    // Before the consumer resumes: the scheduler let the sequence go when the signal fired.
    expect(model.schedulerMetrics().runningSequences).toBe(0);
    await waitForFreeBlocks(model);
    expect(model.schedulerMetrics()).toMatchObject({ runningSequences: 0, kvBlocksInUse: 0 });
    const rest = await stream.next();
    expect(rest.done).toBe(true);
    expect((rest.value as { finishReason: string }).finishReason).toBe('abort');
    expect((await model.generate(promptOf(4, 1), { maxTokens: 2 })).tokenIds).toHaveLength(2);
  });

  test('aborting a queued request rejects it with E_ABORTED and takes it out of the queue', async () => {
    const held = await holdSlot(model);
    const controller = new AbortController();
    const queued = model.generate(promptOf(4, 1), { maxTokens: 3, signal: controller.signal });
    await new Promise((resolve) => setImmediate(resolve));
    expect(model.schedulerMetrics().queueLength).toBe(1);
    controller.abort();
    expect(await codeOf(queued)).toBe('E_ABORTED');
    expect(model.schedulerMetrics().queueLength).toBe(0);
    await held.return(undefined);
  });

  test('dispose fails queued requests with E_DISPOSED', async () => {
    const doomed = await smallModel({ maxSequences: 1 });
    const held = await holdSlot(doomed);
    const queued = doomed.generate(promptOf(4, 1), { maxTokens: 3 });
    await new Promise((resolve) => setImmediate(resolve));
    await doomed.dispose();
    expect(await codeOf(queued)).toBe('E_DISPOSED');
    expect(await codeOf(held.next())).toBe('E_DISPOSED');
  });
});

describe('prefill budget between decode steps (prefillTokensPerStep)', () => {
  const OPTIONS: SchedulerOptions = { maxQueue: 8, queueTimeoutMs: 0, prefillChunkTokens: 512, prefillTokensPerStep: 2048, candidates: 64, greedyChainSteps: 8 };
  let model: Model;
  beforeAll(async () => {
    model = await smallModel({ maxSequences: 4 });
  });
  afterAll(() => model?.dispose());

  /**
   * Greedy generations of `prompts` (maxTokens each) run together by a scheduler of their own over the model's real
   * engine, through a proxy that logs its calls: 'prefill N' for a forward of N tokens, 'prompts A+B' for one
   * forwardPrompts (or forwardPromptsCandidates) call over prompts of A and B tokens, else the method's name.
   */
  async function scheduled(options: Partial<SchedulerOptions>, prompts: number[][], maxTokens: number): Promise<{ calls: string[]; tokens: number[][] }> {
    const engine = model.live();
    const calls: string[] = [];
    const logged = new Proxy(engine, {
      get(target, name) {
        const value = Reflect.get(target, name);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (name === 'forward') calls.push(`prefill ${(args[1] as Int32Array).length}`);
          else if (name === 'forwardPrompts' || name === 'forwardPromptsCandidates') calls.push(`prompts ${Array.from(args[2] as Int32Array).join('+')}`);
          else if (typeof name === 'string' && name.startsWith('decode')) calls.push(name);
          return value.apply(target, args);
        };
      },
    });
    const blocks = engine.kvBlocks();
    const capacity = { maxSequences: 4, kvBlocks: blocks.total, kvBlockTokens: blocks.blockTokens, sampleableVocab: config.vocabSize };
    const scheduler = new Scheduler(logged, capacity, { ...OPTIONS, ...options });
    try {
      const tokens = await Promise.all(
        prompts.map(async (prompt) => {
          const sampler = new Sampler(parseGenerateOptions({ temperature: 0, maxTokens }), { sampleableVocabSize: config.vocabSize });
          const sequence = scheduler.open(Int32Array.from(prompt), { maxTokens, sampler, signal: undefined });
          const out = [await sequence.next()];
          while (out.length < maxTokens) {
            sequence.accept(out[out.length - 1]);
            out.push(await sequence.next());
          }
          sequence.release();
          return out;
        }),
      );
      return { calls, tokens };
    } finally {
      scheduler.close();
    }
  }

  const burst = [7, 12, 20].map((length, i) => promptOf(length, i).ids);

  test('a burst of prompts within the budget is prefilled in one call before the first decode step', async () => {
    const { calls } = await scheduled({}, burst, 4);
    expect(calls[0]).toBe('prompts 7+12+20');
    expect(calls.slice(1).every((call) => call.startsWith('decode'))).toBe(true);
  });

  test('a budget of one token interleaves a decode step between prompts; the tokens do not depend on it', async () => {
    const wide = await scheduled({}, burst, 4);
    const narrow = await scheduled({ prefillTokensPerStep: 1 }, burst, 4);
    expect(narrow.calls.slice(0, 5)).toEqual(['prompts 7', 'decodeBatchCandidates', 'prompts 12', 'decodeBatchCandidates', 'prompts 20']);
    expect(narrow.tokens).toEqual(wide.tokens);
  });

  test('a long prompt runs as many fixed-size chunks as the budget holds per step', async () => {
    const { calls } = await scheduled({ prefillChunkTokens: 5, prefillTokensPerStep: 10 }, [promptOf(23, 5).ids, promptOf(3, 6).ids], 6);
    // Step 1: chunks 1-2 of the long prompt (10 tokens); step 2: chunks 3-4; step 3: its last 3 tokens, then the short
    // prompt (one chunk: through forwardPrompts).
    expect(calls.filter((call) => !call.startsWith('decode'))).toEqual(['prefill 5', 'prefill 5', 'prefill 5', 'prefill 5', 'prefill 3', 'prompts 3']);
  });

  test('prefillTokensPerStep must be a positive integer', async () => {
    for (const bad of [0, -1, 1.5]) expect(await codeOf(smallModel({ prefillTokensPerStep: bad }))).toBe('E_INVALID_ARGUMENT');
  });
});
