/**
 * Batch invariance on the GPU (issue 6): greedy continuations of concurrent requests of different prompt lengths,
 * sharing prefill passes (forwardPrompts) and decode steps through the scheduler, equal the same requests run one at
 * a time, token for token: 16 requests on a 16-sequence model (decode GEMMs on kernels/gemm/gemm_skinny.cu), 48 on a
 * 64-sequence one (on the wgmma kernel's decode layout, csrc/engine/cuda/forward.h). The kernels sum every row in an
 * order that does not depend on the rows beside it (decode: those GEMMs, kernels/attention/decode.cu; prompts:
 * kernels/gemm/gemm_wgmma.cu's K parts) and reduce split partials in a fixed order, so a batched row is bitwise its
 * solo row and there is no near-tie excuse; a parting is printed with its margin in the solo run's logits before
 * failing.
 *
 * The model is the oracle's 1B-shape checkpoint when FLASH_MPT_ORACLE_1B names its folder (scripts/gpu-session.sh
 * makes one), else the embedded 1B shape with seeded random weights.
 */
import { createRandomModel, loadModel, Model, parseConfig } from '../../lib';
import { SEED_MODEL_SHAPE } from '../../lib/bench/engine';
import { describeGpu } from './gpu';

const NEW_TOKENS = 32;

for (const [REQUESTS, SEQUENCES] of [
  [16, 16],
  [48, 64],
]) describeGpu(`batch invariance on cuda:0 (1B shape, bf16): ${REQUESTS} requests, a model of ${SEQUENCES} sequences`, () => {
  let model: Model;
  const source = process.env.FLASH_MPT_ORACLE_1B;

  beforeAll(async () => {
    const options = { device: 'cuda:0' as const, maxSequences: SEQUENCES, maxContext: 512 };
    model = source ? await loadModel(source, options) : await createRandomModel(parseConfig(SEED_MODEL_SHAPE, 'embedded 1B shape'), { ...options, seed: 7 });
  }, 300_000);
  afterAll(async () => {
    await model?.dispose();
  });

  test(`${REQUESTS} concurrent greedy requests of different lengths continue as they do alone`, async () => {
    const vocab = model.config.vocabSize;
    const prompts = Array.from({ length: REQUESTS }, (_, r) => Array.from({ length: 1 + ((r * 37) % 200) }, (_, i) => (r * 7919 + i * 104729 + 11) % vocab));
    const options = { maxTokens: NEW_TOKENS, temperature: 0, ignoreEos: true };
    const solo: number[][] = [];
    for (const ids of prompts) solo.push((await model.generate({ ids }, options)).tokenIds);
    const batched = (await Promise.all(prompts.map((ids) => model.generate({ ids }, options)))).map((r) => r.tokenIds);

    let equal = 0;
    for (let r = 0; r < REQUESTS; r++) {
      const part = solo[r].findIndex((token, i) => token !== batched[r][i]);
      if (part < 0) {
        equal++;
        continue;
      }
      const rows = await model.logits([...prompts[r], ...solo[r].slice(0, part)]);
      const last = rows.subarray(rows.length - vocab);
      const margin = last[solo[r][part]] - last[batched[r][part]];
      console.log(`[batch] ${source ? 'oracle 1B' : 'random 1B'} request ${r} (prompt ${prompts[r].length}): parts at step ${part}, ${batched[r][part]} for ${solo[r][part]}, solo margin ${margin.toExponential(2)}`);
    }
    console.log(`[batch] ${source ? 'oracle 1B' : 'random 1B'}, ${SEQUENCES} sequences: ${equal} of ${REQUESTS} batched continuations equal their solo run over ${NEW_TOKENS} tokens`);
    expect(equal).toBe(REQUESTS);
  }, 600_000);
});
