/**
 * decodeGreedy on the CPU engine: a chain of greedy steps with no round trip to JS between them picks exactly
 * what the library's greedy sampler picks from decodeBatch's full rows one step at a time (ties to the lower id,
 * masked ids, a banned id), grows every sequence by the steps, and refuses bad requests before it changes anything.
 * And the scheduler's use of it: the same tokens as single steps, stops and aborts mid-chain, no chain for
 * samplers that need the logits.
 */
import * as fs from 'node:fs';
import { loadModel, Model } from '../lib';
import { parseConfig } from '../lib/config';
import { createRandomModel } from '../lib/model';
import type { NativeEngine } from '../lib/native';
import { makeTiedModelFolder } from './helpers/candidates';
import { expectNanRowReported, stepwiseGreedy } from './helpers/greedy';
import { TEXT_MODEL } from './helpers/tiny-model';
import { nativeCodeOf } from './helpers/native-errors';

describe('decodeGreedy on the CPU engine', () => {
  const TIED = { ...TEXT_MODEL, vocabSize: 512 };
  // Ids 400 … 511 are masked; ids 256 … 399 tie with ids 0 … 143.
  const SAMPLEABLE = 400;
  const STEPS = 6;
  const CONTEXT = 64;
  const prompts = [[1, 2, 3], [40, 5, 300, 7, 9], [511], [100, 356, 100]].map((ids) => Int32Array.from(ids));
  const first = Int32Array.from([17, 256 + 17, 99, 450]);
  let dir: string;
  let model: Model;
  let engine: NativeEngine;
  beforeAll(async () => {
    dir = await makeTiedModelFolder(TIED);
    model = await loadModel(dir, { device: 'cpu', maxSequences: 8, maxContext: CONTEXT });
    engine = model.live();
  });
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const openAll = async () => {
    const seqs = prompts.map(() => engine.createSequence());
    for (let i = 0; i < prompts.length; i++) await engine.forward(seqs[i], prompts[i], false);
    return Int32Array.from(seqs);
  };
  const releaseAll = (seqs: Int32Array) => seqs.forEach((seq) => engine.releaseSequence(seq));

  test.each([
    ['no banned id', false],
    ['the most frequent pick banned', true],
  ])('picks what the greedy sampler picks step by step (%s)', async (_, ban) => {
    const probe = await openAll();
    const unbanned = await engine.decodeGreedy(probe, first, STEPS, SAMPLEABLE, -1);
    releaseAll(probe);
    const counts = new Map<number, number>();
    for (const id of unbanned) counts.set(id, (counts.get(id) ?? 0) + 1);
    const banned = ban ? [...counts].sort((a, b) => b[1] - a[1])[0][0] : -1;

    const [chained, stepwise] = [await openAll(), await openAll()];
    const got = await engine.decodeGreedy(chained, first, STEPS, SAMPLEABLE, banned);
    const want = await stepwiseGreedy(engine, stepwise, first, STEPS, SAMPLEABLE, banned);
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(got.length).toBe(STEPS * prompts.length);
    expect(got.every((id) => id >= 0 && id < SAMPLEABLE)).toBe(true);
    chained.forEach((seq, i) => expect(engine.sequenceLength(seq)).toBe(prompts[i].length + STEPS));
    if (ban) {
      expect(got.includes(banned)).toBe(false);
      expect(Array.from(got)).not.toEqual(Array.from(unbanned)); // the ban changed the chain
    } else {
      expect(Array.from(got)).toEqual(Array.from(unbanned));
    }
    // The chain is not trivial: different rows pick differently.
    expect(new Set(got).size).toBeGreaterThan(2);
    releaseAll(chained);
    releaseAll(stepwise);
  });

  test('the last step keeps its rows for lastLogits', async () => {
    const seqs = await openAll();
    const picks = await engine.decodeGreedy(seqs, first, 2, SAMPLEABLE, -1);
    const row = await engine.lastLogits(1);
    let best = 0;
    for (let id = 1; id < SAMPLEABLE; id++) if (row[id] > row[best]) best = id;
    expect(picks[prompts.length + 1]).toBe(best);
    releaseAll(seqs);
  });

  test('a row with no finite logit is reported (-2), NaN logits are never picked', async () => {
    await expectNanRowReported(TIED, 'cpu', SAMPLEABLE);
  });

  test('bad requests fail with a typed error and leave the sequences as they were', async () => {
    const seq = engine.createSequence();
    await engine.forward(seq, Int32Array.from([1, 2]), false);
    const one = Int32Array.of(seq);
    const three = Int32Array.of(3);
    expect(await nativeCodeOf(engine.decodeGreedy(one, three, 0, SAMPLEABLE, -1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeGreedy(one, three, 1025, SAMPLEABLE, -1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeGreedy(one, three, 2, 0, -1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeGreedy(one, three, 2, TIED.vocabSize + 1, -1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeGreedy(one, three, 2, SAMPLEABLE, -2))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeGreedy(one, Int32Array.of(3, 4), 2, SAMPLEABLE, -1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeGreedy(new Int32Array(65).fill(seq), new Int32Array(65), 2, SAMPLEABLE, -1))).toBe(
      'E_INVALID_ARGUMENT',
    );
    expect(await nativeCodeOf(engine.decodeGreedy(one, Int32Array.of(TIED.vocabSize), 2, SAMPLEABLE, -1))).toBe('E_TOKEN_RANGE');
    expect(await nativeCodeOf(engine.decodeGreedy(one, three, CONTEXT - 1, SAMPLEABLE, -1))).toBe('E_CONTEXT_LENGTH');
    expect(engine.sequenceLength(seq)).toBe(2);
    expect((await engine.decodeGreedy(one, three, CONTEXT - 2, SAMPLEABLE, -1)).length).toBe(CONTEXT - 2);
    expect(engine.sequenceLength(seq)).toBe(CONTEXT);
    engine.releaseSequence(seq);
  });
});

describe('greedy chains in the scheduler (CPU engine)', () => {
  const SHAPE = {
    model_type: 'mpt', d_model: 64, n_heads: 4, n_layers: 2, expansion_ratio: 4, max_seq_len: 128, vocab_size: 1024,
    no_bias: true, attn_config: { alibi: true, qk_ln: true },
  };
  const config = parseConfig(SHAPE, 'greedy chain test shape');
  let chained: Model;
  let single: Model;
  beforeAll(async () => {
    chained = await createRandomModel(config, { device: 'cpu', seed: 3, greedyChainSteps: 5 });
    single = await createRandomModel(config, { device: 'cpu', seed: 3, greedyChainSteps: 1 });
  });
  afterAll(async () => {
    await chained?.dispose();
    await single?.dispose();
  });
  const prompt = (length: number, salt: number) => ({ ids: Array.from({ length }, (_, i) => (i * 37 + salt) % config.vocabSize) });

  test('gives the tokens single steps give, picked on the device after the prompt', async () => {
    for (const [length, maxTokens] of [[3, 1], [7, 2], [5, 13], [20, 26]]) {
      const before = chained.schedulerMetrics().pickedOnDeviceTotal;
      const got = await chained.generate(prompt(length, maxTokens), { maxTokens, temperature: 0, ignoreEos: true });
      const want = await single.generate(prompt(length, maxTokens), { maxTokens, temperature: 0, ignoreEos: true });
      expect(got.tokenIds).toEqual(want.tokenIds);
      expect(got.tokenIds).toHaveLength(maxTokens);
      expect(chained.schedulerMetrics().pickedOnDeviceTotal - before).toBe(maxTokens - 1);
    }
    expect(single.schedulerMetrics().pickedOnDeviceTotal).toBe(0);
  });

  test('a stop token mid-chain ends the request there and frees its blocks', async () => {
    const full = await single.generate(prompt(6, 1), { maxTokens: 12, temperature: 0, ignoreEos: true });
    const stop = full.tokenIds[7]; // inside the second chain of five
    const cut = full.tokenIds.indexOf(stop);
    const got = await chained.generate(prompt(6, 1), { maxTokens: 12, temperature: 0, stopTokenIds: [stop] });
    expect(got.finishReason).toBe('eos');
    expect(got.tokenIds).toEqual(full.tokenIds.slice(0, cut));
    expect(chained.schedulerMetrics().kvBlocksInUse).toBe(0);
  });

  test('requests that sample, or that bias logits, run single steps beside greedy ones', async () => {
    const before = chained.schedulerMetrics().pickedOnDeviceTotal;
    const sampled = chained.generate(prompt(4, 2), { maxTokens: 10, temperature: 0.8, seed: 1 });
    const biased = chained.generate(prompt(4, 3), { maxTokens: 10, temperature: 0, logitBias: { 5: -100 } });
    const [a, b] = await Promise.all([sampled, biased]);
    expect(chained.schedulerMetrics().pickedOnDeviceTotal).toBe(before);
    expect(a.tokenIds).toEqual((await single.generate(prompt(4, 2), { maxTokens: 10, temperature: 0.8, seed: 1 })).tokenIds);
    expect(b.tokenIds).toEqual((await single.generate(prompt(4, 3), { maxTokens: 10, temperature: 0, logitBias: { 5: -100 } })).tokenIds);
  });

  test('a slow consumer gets the single-step tokens while chains run ahead of it; a request arriving meanwhile is served', async () => {
    const options = { maxTokens: 30, temperature: 0, ignoreEos: true };
    const tokens: number[] = [];
    let arrived: Promise<{ tokenIds: number[] }> | undefined;
    for await (const chunk of chained.stream(prompt(9, 5), options)) {
      if (chunk.tokenId !== null) tokens.push(chunk.tokenId);
      if (tokens.length === 10) arrived = chained.generate(prompt(3, 6), { maxTokens: 6, temperature: 0, ignoreEos: true });
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(tokens).toEqual((await single.generate(prompt(9, 5), options)).tokenIds);
    expect((await arrived!).tokenIds).toEqual((await single.generate(prompt(3, 6), { maxTokens: 6, temperature: 0, ignoreEos: true })).tokenIds);
  });

  test('an abort mid-chain ends the stream and frees the slot', async () => {
    const controller = new AbortController();
    const tokens: number[] = [];
    for await (const chunk of chained.stream(prompt(5, 4), { maxTokens: 40, temperature: 0, ignoreEos: true, signal: controller.signal })) {
      if (chunk.tokenId !== null) tokens.push(chunk.tokenId);
      if (tokens.length === 3) controller.abort();
    }
    expect(tokens).toHaveLength(3);
    for (const deadline = Date.now() + 10_000; chained.schedulerMetrics().kvBlocksInUse > 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(chained.schedulerMetrics().kvBlocksInUse).toBe(0);
    expect(chained.schedulerMetrics().runningSequences).toBe(0);
  });
});
