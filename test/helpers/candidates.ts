/**
 * What the candidate-path tests of the CPU and CUDA engines share: a model whose logits tie exactly, the
 * sampler contract's candidates of a full row computed in JS, and generation option mixes for both sampling
 * paths.
 */
import type { GenerateOptions, Model } from '../../lib';
import type { NativeCandidates } from '../../lib/native';
import { decode, makeTempDir, safetensorsBytes, tensor, TinyModel, writeModelFolder } from './checkpoint-writers';
import { textModelTensors } from './tiny-model';

/**
 * A model folder (no tokenizer) whose upper half of ids repeats the embeddings of the lower half: the tied LM head
 * gives id j and id j + vocab/2 bit-identical logits. Rows in `nanRows` (after the copy) are NaN: such a token's
 * logit is NaN, and a step fed such a token gives NaN everywhere.
 */
export async function makeTiedModelFolder(model: TinyModel, nanRows: number[] = []): Promise<string> {
  const tensors = textModelTensors(model, 3);
  const wte = decode('F32', tensors['transformer.wte.weight'].data);
  const half = (model.vocabSize / 2) * model.dModel;
  wte.copyWithin(half, 0, half);
  for (const row of nanRows) wte.fill(NaN, row * model.dModel, (row + 1) * model.dModel);
  tensors['transformer.wte.weight'] = tensor('F32', [model.vocabSize, model.dModel], wte);
  const dir = await makeTempDir('flash-mpt-tied-model-');
  await writeModelFolder(dir, model, 'mpt', { file: 'model.safetensors', bytes: safetensorsBytes(tensors) });
  return dir;
}

export interface ReferenceCandidates {
  ids: number[];
  logits: number[];
  logSumExp: number;
}

/** The contract: the k best ids below `sampleable` by (logit descending, id ascending), and the LSE over them all. */
export function referenceCandidates(row: Float32Array, sampleable: number, k: number): ReferenceCandidates {
  const order = Array.from({ length: sampleable }, (_, id) => id).sort((a, b) => row[b] - row[a] || a - b);
  const ids = order.slice(0, k);
  const max = row[order[0]];
  let sum = 0;
  for (let id = 0; id < sampleable; id++) sum += Math.exp(row[id] - max);
  return { ids, logits: ids.map((id) => row[id]), logSumExp: max + Math.log(sum) };
}

/**
 * Expects each row's candidates in `got` to be the reference ones of its full row (ids and logits exact; the LSE
 * within `lseTolerance`, which is also the relative error of the mass it implies). Returns the references.
 */
export function expectReferenceCandidates(
  got: NativeCandidates,
  rows: Float32Array[],
  sampleable: number,
  k: number,
  lseTolerance: number,
): ReferenceCandidates[] {
  return rows.map((row, r) => {
    const want = referenceCandidates(row, sampleable, k);
    expect(Array.from(got.ids.subarray(r * k, (r + 1) * k))).toEqual(want.ids);
    expect(Array.from(got.logits.subarray(r * k, (r + 1) * k))).toEqual(want.logits);
    expect(Math.abs(got.logSumExp[r] - want.logSumExp)).toBeLessThanOrEqual(lseTolerance);
    return want;
  });
}

/** True when some candidate ties the one ranked before it. */
export function holdsTies(candidates: ReferenceCandidates[]): boolean {
  return candidates.some(({ logits }) => logits.some((logit, j) => j > 0 && logit === logits[j - 1]));
}

/**
 * Sampling options that the candidates decide (greedy, truncation, penalties that only lower logits) and options
 * that need full rows (penalties or biases that raise them); token ids are GPT-NeoX's.
 */
export const OPTION_MIXES: GenerateOptions[] = [
  { temperature: 0 },
  { temperature: 0.7, topK: 40 },
  { temperature: 1 },
  { temperature: 1.3, topP: 0.9 },
  { temperature: 0.6, topP: 0.5 },
  { temperature: 0.8, minP: 0.1 },
  { temperature: 0.4, minP: 0.2 },
  { temperature: 0.3, topP: 0.95, minP: 0.05 },
  { temperature: 0.9, topK: 20, topP: 0.8, minP: 0.05 },
  { temperature: 0.8, repetitionPenalty: 1.3 },
  { temperature: 0, repetitionPenalty: 1.5, ignoreEos: true },
  { topK: 50, presencePenalty: 0.6, frequencyPenalty: 0.4 },
  { temperature: 0, logitBias: { '13': -100, '285': -5 } },
  { repetitionPenalty: 0.8 },
  { presencePenalty: -0.5, frequencyPenalty: -0.2 },
  { temperature: 0.7, logitBias: { '13': 4, '0': -100 } },
];

/**
 * Runs every option mix on both models with the same seeds and expects the same tokens from both. `together`
 * runs the mixes at once, so decode steps mix rows that the candidates decide with rows that need their full
 * row: only for an engine whose logits do not depend on the batch (the CPU engine's do not).
 */
export async function expectSameTokens(withCandidates: Model, fullRows: Model, prompts: string[], together: boolean): Promise<void> {
  const runs = OPTION_MIXES.map((options, i) => ({ prompt: prompts[i % prompts.length], options: { maxTokens: 24, seed: 100 + i, ...options } }));
  const generateAll = async (model: Model) => {
    if (together) return Promise.all(runs.map((run) => model.generate(run.prompt, run.options)));
    const results = [];
    for (const run of runs) results.push(await model.generate(run.prompt, run.options));
    return results;
  };
  const expected = await generateAll(fullRows);
  const got = await generateAll(withCandidates);
  got.forEach((result, i) => expect([runs[i].options, result.tokenIds]).toEqual([runs[i].options, expected[i].tokenIds]));
}
