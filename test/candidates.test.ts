/**
 * The candidate path on the CPU engine: decodeBatchCandidates (forwardPromptsCandidates) hands back exactly the
 * sampler contract's top-K and log-sum-exp of the rows decodeBatch (forwardPrompts) gives for the same model state
 * (ties to the lower id, masked ids), keeps those rows for lastLogits; and generation picks the same tokens with candidates as with full rows for the same
 * seeds, over many option mixes, with the candidate path really deciding tokens.
 */
import * as fs from 'node:fs';
import { loadModel, Model } from '../lib';
import type { NativeEngine } from '../lib/native';
import { expectReferenceCandidates, expectSameTokens, holdsTies, makeTiedModelFolder, referenceCandidates } from './helpers/candidates';
import { describeWithData } from './helpers/data';
import { makeTextModelFolder, TEXT_MODEL } from './helpers/tiny-model';
import { nativeCodeOf } from './helpers/native-errors';

describe('decodeBatchCandidates on the CPU engine', () => {
  const TIED = { ...TEXT_MODEL, vocabSize: 512 };
  const VOCAB = TIED.vocabSize;
  // Ids 400 … 511 are masked; ids 256 … 399 tie with ids 0 … 143.
  const SAMPLEABLE = 400;
  const K = 64;
  let dir: string;
  let model: Model;
  let engine: NativeEngine;
  beforeAll(async () => {
    dir = await makeTiedModelFolder(TIED);
    model = await loadModel(dir, { device: 'cpu', maxSequences: 8 });
    engine = model.live();
  });
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("equals the top-K and log-sum-exp of decodeBatch's rows for the same state, and keeps those rows", async () => {
    const prompts = [[1, 2, 3], [40, 5, 300, 7, 9], [511], [100, 356, 100]].map((ids) => Int32Array.from(ids));
    const next = Int32Array.from([17, 256 + 17, 99, 450]);
    const openAll = async () => {
      const seqs = prompts.map(() => engine.createSequence());
      for (let i = 0; i < prompts.length; i++) await engine.forward(seqs[i], prompts[i], false);
      return Int32Array.from(seqs);
    };
    const [viaRows, viaCandidates] = [await openAll(), await openAll()];

    const logits = await engine.decodeBatch(viaRows, next);
    const rows = prompts.map((_, r) => logits.subarray(r * VOCAB, (r + 1) * VOCAB));
    const got = await engine.decodeBatchCandidates(viaCandidates, next, K, SAMPLEABLE);
    const want = expectReferenceCandidates(got, rows, SAMPLEABLE, K, 1e-6);
    for (let r = 0; r < rows.length; r++) expect(await engine.lastLogits(r)).toEqual(rows[r]);

    // The case is a real test: candidates tie, and the mask keeps out ids that would rank among the K best.
    expect(holdsTies(want)).toBe(true);
    expect(rows.some((row) => referenceCandidates(row, VOCAB, K).ids.some((id) => id >= SAMPLEABLE))).toBe(true);
    for (const seqs of [viaRows, viaCandidates]) seqs.forEach((seq) => engine.releaseSequence(seq));
  });

  test("forwardPromptsCandidates equals the top-K of forwardPrompts' rows for the same prompts, and keeps those rows", async () => {
    const prompts = [[1, 2, 3], [40, 5, 300, 7, 9], [511], [100, 356, 100, 256, 0]];
    const ids = Int32Array.from(prompts.flat());
    const lengths = Int32Array.from(prompts, (p) => p.length);
    const open = () => Int32Array.from(prompts, () => engine.createSequence());
    const [viaRows, viaCandidates] = [open(), open()];

    const logits = await engine.forwardPrompts(viaRows, ids, lengths);
    const rows = prompts.map((_, r) => logits.subarray(r * VOCAB, (r + 1) * VOCAB));
    expect(await nativeCodeOf(engine.lastLogits(0))).toBe('E_INVALID_ARGUMENT'); // full rows came back: none kept
    const got = await engine.forwardPromptsCandidates(viaCandidates, ids, lengths, K, SAMPLEABLE);
    const want = expectReferenceCandidates(got, rows, SAMPLEABLE, K, 1e-6);
    for (let r = 0; r < rows.length; r++) expect(await engine.lastLogits(r)).toEqual(rows[r]);
    expect(await nativeCodeOf(engine.lastLogits(rows.length))).toBe('E_INVALID_ARGUMENT');
    expect(holdsTies(want)).toBe(true);
    viaCandidates.forEach((seq, i) => expect(engine.sequenceLength(seq)).toBe(prompts[i].length));

    // Bad requests fail before any work: the sequences stay empty.
    viaRows.forEach((seq) => engine.releaseSequence(seq));
    const fresh = open();
    for (const [k, sampleable] of [[0, VOCAB], [VOCAB + 1, VOCAB], [8, VOCAB + 1], [8, 0], [65, 64]]) {
      expect(await nativeCodeOf(engine.forwardPromptsCandidates(fresh, ids, lengths, k, sampleable))).toBe('E_INVALID_ARGUMENT');
    }
    fresh.forEach((seq) => expect(engine.sequenceLength(seq)).toBe(0));
    for (const seqs of [viaCandidates, fresh]) seqs.forEach((seq) => engine.releaseSequence(seq));
  });

  test('lastLogits holds only the latest decode step; bad requests fail and leave the sequence as it was', async () => {
    const seq = engine.createSequence();
    await engine.forward(seq, Int32Array.from([1, 2]), false);
    expect(await nativeCodeOf(engine.lastLogits(0))).toBe('E_INVALID_ARGUMENT');
    const row = await engine.decodeBatch(Int32Array.of(seq), Int32Array.of(3));
    expect(await engine.lastLogits(0)).toEqual(row);
    expect(await nativeCodeOf(engine.lastLogits(1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeBatchCandidates(Int32Array.of(seq), Int32Array.of(3), 65, 64))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeBatchCandidates(Int32Array.of(seq), Int32Array.of(3), 8, VOCAB + 1))).toBe('E_INVALID_ARGUMENT');
    expect(await nativeCodeOf(engine.decodeBatchCandidates(Int32Array.of(seq), Int32Array.of(3), 0, VOCAB))).toBe('E_INVALID_ARGUMENT');
    expect(engine.sequenceLength(seq)).toBe(3);
    engine.releaseSequence(seq);
  });
});

describeWithData('sampling from candidates vs full rows (CPU engine)', 'data/gpt-neox-20b/tokenizer.json', () => {
  const prompts = ['Once upon a time,', 'The capital of France is', 'def fibonacci(n):', 'In 1969, the first'];
  let dir: string;
  let withCandidates: Model;
  let fullRows: Model;
  beforeAll(async () => {
    dir = await makeTextModelFolder();
    // greedyChainSteps 1: every decode step comes back to the sampler (no device picks).
    withCandidates = await loadModel(dir, { device: 'cpu', maxSequences: 16, candidates: 64, greedyChainSteps: 1 });
    fullRows = await loadModel(dir, { device: 'cpu', maxSequences: 16, candidates: 0, greedyChainSteps: 1 });
  });
  afterAll(async () => {
    await withCandidates?.dispose();
    await fullRows?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the same seeds give the same tokens over many option mixes, batched together', async () => {
    const before = withCandidates.schedulerMetrics();
    await expectSameTokens(withCandidates, fullRows, prompts, true);
    const after = withCandidates.schedulerMetrics();
    expect(after.sampledFromCandidatesTotal).toBeGreaterThan(before.sampledFromCandidatesTotal);
    expect(after.sampledFromFullRowTotal).toBeGreaterThan(before.sampledFromFullRowTotal);
    expect(fullRows.schedulerMetrics().sampledFromCandidatesTotal).toBe(0);
  });

  test("greedy decoding takes every token from the candidates, the prompt's first one too", async () => {
    const before = withCandidates.schedulerMetrics();
    const result = await withCandidates.generate(prompts[0], { maxTokens: 20, temperature: 0, ignoreEos: true });
    const after = withCandidates.schedulerMetrics();
    expect(after.sampledFromFullRowTotal - before.sampledFromFullRowTotal).toBe(0);
    expect(after.sampledFromCandidatesTotal - before.sampledFromCandidatesTotal).toBe(result.tokenIds.length);
    const fromFullRows = await fullRows.generate(prompts[0], { maxTokens: 20, temperature: 0, ignoreEos: true });
    expect(result.tokenIds).toEqual(fromFullRows.tokenIds);
  });
});
