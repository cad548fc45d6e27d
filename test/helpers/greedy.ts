/**
 * What the decodeGreedy tests of the CPU and CUDA engines share: the same chain run one decodeBatch at a time,
 * each pick made by the library's own greedy sampler (temperature 0; ignoreEos bans the eos id) from the full row.
 */
import { parseGenerateOptions, Sampler } from '../../lib/sampling';
import type { NativeEngine } from '../../lib/native';

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
