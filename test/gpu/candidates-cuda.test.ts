/**
 * The candidate path on the CUDA engine: decodeBatchCandidates against the sampler contract's top-K and
 * log-sum-exp of the rows lastLogits keeps (ties, masked ids, a step of two decode groups, one and two merge
 * passes of the top-K kernel), forwardPromptsCandidates against forwardPrompts' rows over several passes, and
 * generation with candidates picks the tokens it picks with full rows for the
 * same seeds.
 */
import * as fs from 'node:fs';
import { loadModel, Model } from '../../lib';
import type { NativeEngine } from '../../lib/native';
import { expectReferenceCandidates, expectSameTokens, holdsTies, makeTiedModelFolder, referenceCandidates } from '../helpers/candidates';
import type { TinyModel } from '../helpers/checkpoint-writers';
import { describeWithData } from '../helpers/data';
import { makeTextModelFolder, TEXT_MODEL } from '../helpers/tiny-model';
import { describeGpu } from './gpu';

/** head_dim 64: the fused attention kernels, so decode steps run through the CUDA graphs. */
const GRAPH_SHAPE: Partial<TinyModel> = { dModel: 128, nHeads: 2 };
/** fp32 LSE on the GPU; its error is also the relative error of the mass the sampler infers (which allows 1e-4). */
const LSE_TOLERANCE = 2e-5;

describeGpu('decodeBatchCandidates on the CUDA engine', () => {
  // Ids 20000 … 20479 are masked; ids 10240 … 19999 tie with ids 0 … 9759. Five top-K chunks per row.
  const TIED: TinyModel = { ...TEXT_MODEL, ...GRAPH_SHAPE, vocabSize: 20480 };
  const VOCAB = TIED.vocabSize;
  const SAMPLEABLE = 20000;
  // More than one decode group (64 rows).
  const ROWS = 70;
  let dir: string;
  let model: Model;
  let engine: NativeEngine;
  let seqs: Int32Array;
  beforeAll(async () => {
    dir = await makeTiedModelFolder(TIED);
    model = await loadModel(dir, { device: 'cuda', maxSequences: ROWS, maxContext: 64 });
    engine = model.live();
    seqs = Int32Array.from({ length: ROWS }, () => engine.createSequence());
    for (let i = 0; i < ROWS; i++) {
      await engine.forward(seqs[i], Int32Array.from({ length: 1 + (i % 5) }, (_, j) => (i * 131 + j * 977) % VOCAB), false);
    }
  });
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const nextIds = (step: number) => Int32Array.from({ length: ROWS }, (_, i) => (i * 7919 + step * 104729) % VOCAB);

  it.each([
    [1, 64],
    [2, 1024],
  ])("step %i, k %i: the contract's candidates of the rows lastLogits keeps", async (step, k) => {
    const got = await engine.decodeBatchCandidates(seqs, nextIds(step), k, SAMPLEABLE);
    const rows: Float32Array[] = [];
    for (let r = 0; r < ROWS; r++) rows.push(await engine.lastLogits(r));
    const want = expectReferenceCandidates(got, rows, SAMPLEABLE, k, LSE_TOLERANCE);
    expect(holdsTies(want)).toBe(true);
    expect(rows.some((row) => referenceCandidates(row, VOCAB, k).ids.some((id) => id >= SAMPLEABLE))).toBe(true);
  });

  it('lastLogits after decodeBatch gives its rows', async () => {
    const logits = await engine.decodeBatch(seqs, nextIds(3));
    for (const r of [0, 63, 64, ROWS - 1]) expect(await engine.lastLogits(r)).toEqual(logits.subarray(r * VOCAB, (r + 1) * VOCAB));
  });
});

describeGpu('forwardPromptsCandidates on the CUDA engine', () => {
  const TIED: TinyModel = { ...TEXT_MODEL, ...GRAPH_SHAPE, vocabSize: 20480 };
  const VOCAB = TIED.vocabSize;
  const SAMPLEABLE = 20000;
  // 64 prompts of 33-48 tokens: more rows than one prompts pass holds, so the call runs several passes.
  const PROMPTS = Array.from({ length: 64 }, (_, i) => Int32Array.from({ length: 33 + (i % 16) }, (_, j) => (i * 131 + j * 977) % VOCAB));
  let dir: string;
  let model: Model;
  let engine: NativeEngine;
  beforeAll(async () => {
    dir = await makeTiedModelFolder(TIED);
    model = await loadModel(dir, { device: 'cuda', maxSequences: 128, maxContext: 64 });
    engine = model.live();
  });
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("gives the contract's candidates of forwardPrompts' rows for the same prompts, and keeps those rows", async () => {
    const ids = Int32Array.from(PROMPTS.flatMap((p) => Array.from(p)));
    const lengths = Int32Array.from(PROMPTS, (p) => p.length);
    const open = () => Int32Array.from(PROMPTS, () => engine.createSequence());
    const logits = await engine.forwardPrompts(open(), ids, lengths);
    const rows = PROMPTS.map((_, r) => logits.subarray(r * VOCAB, (r + 1) * VOCAB));
    const got = await engine.forwardPromptsCandidates(open(), ids, lengths, 64, SAMPLEABLE);
    const want = expectReferenceCandidates(got, rows, SAMPLEABLE, 64, LSE_TOLERANCE);
    expect(holdsTies(want)).toBe(true);
    for (const r of [0, 31, 32, 63]) expect(await engine.lastLogits(r)).toEqual(rows[r]);
  });
});

describeGpu('sampling from candidates vs full rows (CUDA engine)', () => {
  describeWithData('with the GPT-NeoX tokenizer', 'data/gpt-neox-20b/tokenizer.json', () => {
    const prompts = ['Once upon a time,', 'The capital of France is', 'def fibonacci(n):', 'In 1969, the first'];
    let dir: string;
    let withCandidates: Model;
    let fullRows: Model;
    beforeAll(async () => {
      dir = await makeTextModelFolder({ ...TEXT_MODEL, ...GRAPH_SHAPE });
      withCandidates = await loadModel(dir, { device: 'cuda', maxContext: 64, candidates: 64 });
      fullRows = await loadModel(dir, { device: 'cuda', maxContext: 64, candidates: 0 });
    });
    afterAll(async () => {
      await withCandidates?.dispose();
      await fullRows?.dispose();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    // One request at a time: the GPU's logits depend on the batch (its GEMMs pick kernels by row count).
    it('the same seeds give the same tokens over many option mixes', async () => {
      const before = withCandidates.schedulerMetrics();
      await expectSameTokens(withCandidates, fullRows, prompts, false);
      const after = withCandidates.schedulerMetrics();
      expect(after.sampledFromCandidatesTotal).toBeGreaterThan(before.sampledFromCandidatesTotal);
      expect(fullRows.schedulerMetrics().sampledFromCandidatesTotal).toBe(0);
    });
  });
});
