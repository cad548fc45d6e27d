/**
 * forwardPrompts on the CUDA engine: prompts prefilled together in one pass (per-row cache writes, one attention per
 * prompt over its own cache, each prompt's last row gathered for the head) give the logits and the KV cache of one
 * forward per prompt, up to what the GEMMs' row count changes in half precision (bitwise equality is the CPU
 * engine's test); a prompt longer than a pass (2048 rows) runs alone in chunks between the others. The fused
 * kernels (bf16, head_dim 64) and the naive attention of the fp32 mode.
 */
import * as fs from 'node:fs';
import { loadModel, Model } from '../../lib';
import { makeTiedModelFolder } from '../helpers/candidates';
import { promptsBesideSolo } from '../helpers/prompts';
import { TEXT_MODEL } from '../helpers/tiny-model';
import { describeGpu, relativeL2 } from './gpu';

describeGpu('forwardPrompts on the CUDA engine', () => {
  const SHAPE = { ...TEXT_MODEL, dModel: 128, nHeads: 2, vocabSize: 8192 };
  // Relative L2 distance between the grouped and the solo logits rows: half precision, another GEMM row count.
  const TOLERANCE = { bf16: 2e-2, f32: 1e-4 };
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
    ['f32', [3, 40, 17]],
  ] as const)('%s, prompts of %j tokens: the logits and the cache of one forward per prompt', async (dtype, lengths) => {
    const model = await loadModel(dir, { device: 'cuda', dtype, maxSequences: 2 * lengths.length, maxContext: 2200 });
    models.push(model);
    const r = await promptsBesideSolo(model.live(), lengths.map((n, i) => promptOf(n, i)), SHAPE.vocabSize);
    const rows = (a: Float32Array) => lengths.map((_, i) => a.subarray(i * SHAPE.vocabSize, (i + 1) * SHAPE.vocabSize));
    const worst = (a: Float32Array, b: Float32Array) => Math.max(...rows(a).map((row, i) => relativeL2(row, rows(b)[i])));
    expect(worst(r.together, r.alone)).toBeLessThan(TOLERANCE[dtype]);
    expect(worst(r.nextTogether, r.nextAlone)).toBeLessThan(TOLERANCE[dtype]);
  });
});
