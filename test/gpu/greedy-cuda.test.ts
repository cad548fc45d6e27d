/**
 * decodeGreedy on the CUDA engine: the chain whose picks the GPU makes inside the decode step's graph picks exactly
 * what the library's greedy sampler picks from decodeBatch's rows one step at a time — ties to the lower id,
 * masked ids, a banned id, one row and a full decode group, rows of a vocabulary that is not a multiple of 4 (not
 * 16-byte aligned) — and so does the eager path of models that the graphs do not take (fp32 compute). A row with no
 * finite logit is reported, not picked.
 */
import * as fs from 'node:fs';
import { loadModel, Model } from '../../lib';
import type { NativeEngine } from '../../lib/native';
import { makeTiedModelFolder } from '../helpers/candidates';
import { expectNanRowReported, stepwiseGreedy } from '../helpers/greedy';
import { TEXT_MODEL } from '../helpers/tiny-model';
import { describeGpu } from './gpu';

describeGpu('decodeGreedy on the CUDA engine', () => {
  // head_dim 64: the fused attention kernels and the decode graphs. Ids from 20000 are masked; ids from vocab / 2
  // tie with the ids vocab / 2 below them.
  const ALIGNED = 20480;
  const ODD = 20482;
  const SAMPLEABLE = 20000;
  const STEPS = 12;
  const ROWS = 64;
  const dirs = new Map<number, string>();
  const models: Model[] = [];
  beforeAll(async () => {
    for (const vocabSize of [ALIGNED, ODD]) dirs.set(vocabSize, await makeTiedModelFolder({ ...TEXT_MODEL, dModel: 128, nHeads: 2, vocabSize }));
  });
  afterAll(async () => {
    for (const model of models) await model.dispose();
    for (const dir of dirs.values()) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function engineOf(dtype: 'bf16' | 'f32', vocab: number): Promise<NativeEngine> {
    const model = await loadModel(dirs.get(vocab)!, { device: 'cuda', dtype, maxSequences: 2 * ROWS, maxContext: 64 });
    models.push(model);
    return model.live();
  }

  async function open(engine: NativeEngine, rows: number): Promise<Int32Array> {
    const seqs = Int32Array.from({ length: rows }, () => engine.createSequence());
    for (let i = 0; i < rows; i++) {
      await engine.forward(seqs[i], Int32Array.from({ length: 1 + (i % 5) }, (_, j) => (i * 131 + j * 977) % SAMPLEABLE), false);
    }
    return seqs;
  }

  it.each([
    ['bf16', ALIGNED, 1, false],
    ['bf16', ALIGNED, ROWS, false],
    ['bf16', ALIGNED, 5, true],
    ['bf16', ODD, 7, true],
    ['f32', ALIGNED, 3, true],
  ] as const)('%s, vocabulary %i, %i rows (banned id: %s): the chain picks what the sampler picks step by step', async (dtype, vocab, rows, ban) => {
    const engine = await engineOf(dtype, vocab);
    const first = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % SAMPLEABLE);
    const probe = await open(engine, rows);
    const unbanned = await engine.decodeGreedy(probe, first, STEPS, SAMPLEABLE, -1);
    probe.forEach((seq) => engine.releaseSequence(seq));
    const counts = new Map<number, number>();
    for (const id of unbanned) counts.set(id, (counts.get(id) ?? 0) + 1);
    const banned = ban ? [...counts].sort((a, b) => b[1] - a[1])[0][0] : -1;

    const [chained, stepwise] = [await open(engine, rows), await open(engine, rows)];
    const lengths = Array.from(chained, (seq) => engine.sequenceLength(seq));
    const got = await engine.decodeGreedy(chained, first, STEPS, SAMPLEABLE, banned);
    const want = await stepwiseGreedy(engine, stepwise, first, STEPS, SAMPLEABLE, banned);
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(got.every((id) => id >= 0 && id < SAMPLEABLE)).toBe(true);
    chained.forEach((seq, i) => expect(engine.sequenceLength(seq)).toBe(lengths[i] + STEPS));
    if (ban) expect(got.includes(banned)).toBe(false);
    if (ban) expect(Array.from(got)).not.toEqual(Array.from(unbanned));
    // A second chain continues the first one: same as continuing step by step.
    const last = got.subarray((STEPS - 1) * rows);
    const got2 = await engine.decodeGreedy(chained, last, 3, SAMPLEABLE, banned);
    const want2 = await stepwiseGreedy(engine, stepwise, want.subarray((STEPS - 1) * rows), 3, SAMPLEABLE, banned);
    expect(Array.from(got2)).toEqual(Array.from(want2));
    for (const seqs of [chained, stepwise]) seqs.forEach((seq) => engine.releaseSequence(seq));
  });

  it('reports a row with no finite logit (-2) and never picks a NaN logit', async () => {
    await expectNanRowReported({ ...TEXT_MODEL, dModel: 128, nHeads: 2, vocabSize: ALIGNED }, 'cuda', SAMPLEABLE);
  });
});
