/**
 * forwardPrompts on the CUDA engine: prompts prefilled together in one pass (per-row cache writes; fresh prompts of up
 * to 1,024 tokens attend packed in one launch, longer ones each over its own cache; each prompt's last row gathered
 * for the head) give each prompt the logits and the KV
 * cache of its solo pass (forwardPrompts of that prompt alone, as the scheduler runs a lone request), bit for bit:
 * the pass's GEMMs are row-invariant (kernels/gemm/gemm.h; where the device's GEMMs cannot promise that, the engine
 * runs the prompts one by one). Against forward (a chunk pass, whose GEMMs take the fastest layout for its rows)
 * they agree within half-precision tolerance. A prompt longer than a pass (2048 rows) runs alone in chunks between
 * the others. The fused kernels (bf16, head_dim 64) and the naive attention of the fp32 mode.
 */
import * as fs from 'node:fs';
import { loadModel, Model } from '../../lib';
import { makeTiedModelFolder } from '../helpers/candidates';
import { promptsBesideSolo } from '../helpers/prompts';
import { TEXT_MODEL } from '../helpers/tiny-model';
import { describeGpu, maxAbsDiff, relativeL2 } from './gpu';

describeGpu('forwardPrompts on the CUDA engine', () => {
  const SHAPE = { ...TEXT_MODEL, dModel: 128, nHeads: 2, vocabSize: 8192 };
  let dir: string;
  const models: Model[] = [];
  beforeAll(async () => {
    dir = await makeTiedModelFolder(SHAPE);
  });
  afterAll(async () => {
    for (const model of models) await model.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const promptOf = (length: number, salt: number) => Int32Array.from({ length }, (_, i) => (i * 7919 + salt * 104729 + 1) % SHAPE.vocabSize);

  it.each([
    ['bf16', [1, 7, 64, 300, 2]],
    ['bf16', [5, 2100, 9]],
    // One pass: the short prompts attend packed in one launch, the one past the short tile (1,024) on its own.
    ['bf16', [3, 1500, 40]],
    ['f32', [3, 40, 17]],
  ] as const)('%s, prompts of %j tokens: the logits and the cache of each prompt\'s solo pass, bit for bit', async (dtype, lengths) => {
    const model = await loadModel(dir, { device: 'cuda', dtype, maxSequences: 2 * lengths.length, maxContext: 2200 });
    models.push(model);
    const prompts = lengths.map((n, i) => promptOf(n, i));
    const r = await promptsBesideSolo(model.live(), prompts, SHAPE.vocabSize, 'forwardPrompts');
    expect(maxAbsDiff(r.together, r.alone)).toBe(0);
    expect(maxAbsDiff(r.nextTogether, r.nextAlone)).toBe(0);
    const chunks = await promptsBesideSolo(model.live(), prompts, SHAPE.vocabSize, 'forward');
    expect(relativeL2(chunks.together, chunks.alone)).toBeLessThan(dtype === 'bf16' ? 2e-2 : 1e-4);
  });
});
