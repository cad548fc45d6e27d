/**
 * What the decodeGreedy tests of the CPU and CUDA engines share: the same chain run one decodeBatch at a time,
 * each pick made by the library's own greedy sampler (temperature 0; ignoreEos bans the eos id) from the full row;
 * and the chain on a model with a NaN embedding row.
 */
import * as fs from 'node:fs';
import { loadModel } from '../../lib';
import { parseGenerateOptions, Sampler } from '../../lib/sampling';
import type { NativeEngine } from '../../lib/native';
import { makeTiedModelFolder } from './candidates';
import type { TinyModel } from './checkpoint-writers';

/** steps × seqs.length picks (step-major), as decodeGreedy returns them. */
export async function stepwiseGreedy(
  engine: NativeEngine,
  seqs: Int32Array,
  ids: Int32Array,
  steps: number,
  sampleableVocab: number,
  bannedId: number,
): Promise<Int32Array> {
  const options = parseGenerateOptions({ temperature: 0, ignoreEos: bannedId >= 0 });
  const vocab = { sampleableVocabSize: sampleableVocab, eosTokenId: bannedId >= 0 ? bannedId : undefined };
  const samplers = Array.from(seqs, () => new Sampler(options, vocab));
  const picks = new Int32Array(steps * seqs.length);
  let next = ids;
  for (let step = 0; step < steps; step++) {
    const logits = await engine.decodeBatch(seqs, next);
    const width = logits.length / seqs.length;
    next = Int32Array.from(samplers, (sampler, r) => sampler.sample(logits.subarray(r * width, (r + 1) * width)));
    picks.set(next, step * seqs.length);
  }
  return picks;
}

/**
 * A chain on a model whose embedding row `nanId` is NaN (so is that id's logit in every row): the row fed `nanId` has
 * no finite logit and is reported (-2), the other row's picks never take the NaN id, and the last step's row keeps
 * its NaN logit for lastLogits.
 */
export async function expectNanRowReported(model: TinyModel, device: 'cpu' | 'cuda', sampleableVocab: number): Promise<void> {
  const nanId = 7;
  const dir = await makeTiedModelFolder(model, [nanId]);
  const loaded = await loadModel(dir, { device, maxSequences: 2, maxContext: 64 });
  try {
    const engine = loaded.live();
    const seqs = Int32Array.from([engine.createSequence(), engine.createSequence()]);
    for (const seq of seqs) await engine.forward(seq, Int32Array.of(1, 2), false);
    const picks = await engine.decodeGreedy(seqs, Int32Array.of(nanId, 3), 3, sampleableVocab, -1);
    expect(picks[0]).toBe(-2);
    expect(picks[1]).toBeGreaterThanOrEqual(0);
    expect([picks[3], picks[5]]).not.toContain(nanId);
    expect(Number.isNaN((await engine.lastLogits(1))[nanId])).toBe(true);
  } finally {
    await loaded.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
