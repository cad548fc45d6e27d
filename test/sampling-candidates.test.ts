import { Candidates, GenerateOptions, parseGenerateOptions, Sampler, SeededRng } from '../lib/sampling';

// Hot loops use these, not Math.*: global lookups are slow inside jest's vm context.
const { sqrt, log, cos, exp, floor, round, fround, PI } = Math;

const SIZE = 3000; // sampleable ids
const ROW = 3072; // padded row, as the engine's vocabulary is

function gaussian(rng: SeededRng): number {
  return sqrt(-2 * log(1 - rng.nextFloat())) * cos(2 * PI * rng.nextFloat());
}

type RowKind = 'peaked' | 'flat' | 'quantized' | 'padded-spike';

/** Synthetic logits of several shapes; 'quantized' has many exact ties, as bf16 logits do. */
function makeRow(kind: RowKind, rng: SeededRng): Float32Array {
  const scale = 1 + 4 * rng.nextFloat();
  const row = Float32Array.from({ length: ROW }, () => gaussian(rng) * (kind === 'flat' ? 0.5 : scale));
  if (kind === 'peaked') row[floor(rng.nextFloat() * SIZE)] += 8;
  if (kind === 'quantized') for (let i = 0; i < ROW; i++) row[i] = round(row[i] * 2) / 2;
  if (kind === 'padded-spike') row[SIZE + 5] = 50; // unsampleable, but among the candidates
  return row;
}

/**
 * What the GPU hands over: the K best by (logit desc, id asc) and the log-sum-exp in fp32, over the whole row or,
 * when `masked`, over the sampleable ids only (an engine that masks the padding spends no candidate on it).
 */
function candidatesOf(row: Float32Array, k: number, masked = false): Candidates {
  const considered = masked ? row.subarray(0, SIZE) : row;
  const order = Array.from(considered.keys()).sort((a, b) => considered[b] - considered[a] || a - b);
  const max = considered[order[0]];
  const lse = max + log(considered.reduce((sum, x) => sum + exp(x - max), 0));
  const best = order.slice(0, k);
  return { ids: Int32Array.from(best), logits: Float32Array.from(best, (id) => row[id]), logSumExp: fround(lse) };
}

interface Outcome {
  decided: number;
  steps: number;
}

/**
 * Two samplers with the same seed: one tries the candidate path first and falls back to the full row, the
 * other always reads the full row. Every step must give the same token.
 */
function compare(
  options: GenerateOptions,
  seed: number,
  k = 64,
  steps = 120,
  extra: { eosTokenId?: number; masked?: boolean } = {},
): Outcome {
  const { eosTokenId, masked } = extra;
  const resolved = parseGenerateOptions({ seed, ...options });
  const withCandidates = new Sampler(resolved, { sampleableVocabSize: SIZE, eosTokenId });
  const fullRow = new Sampler(resolved, { sampleableVocabSize: SIZE, eosTokenId });
  const rng = new SeededRng(seed + 1000);
  const prompt = Array.from({ length: 40 }, () => floor(rng.nextFloat() * ROW));
  withCandidates.setPrompt(prompt);
  fullRow.setPrompt(prompt);
  const kinds: RowKind[] = ['peaked', 'flat', 'quantized', 'padded-spike'];
  let decided = 0;
  for (let step = 0; step < steps; step++) {
    const row = makeRow(kinds[step % kinds.length], rng);
    const fromCandidates = withCandidates.sampleFromCandidates(candidatesOf(row, k, masked));
    if (fromCandidates !== null) decided++;
    const token = fromCandidates ?? withCandidates.sample(row);
    const expected = fullRow.sample(row);
    if (token !== expected) throw new Error(`step ${step}: candidate path ${fromCandidates}, fallback ${token}, full row ${expected}`);
    withCandidates.accept(token);
    fullRow.accept(expected);
  }
  return { decided, steps };
}

describe('candidate path ≡ full-row path', () => {
  test('greedy always decides from the candidates', () => {
    for (const seed of [1, 2, 3]) {
      expect(compare({ temperature: 0 }, seed)).toEqual({ decided: 120, steps: 120 });
    }
  });

  test('top-k ≤ K always decides from the candidates', () => {
    // K counts sampleable candidates, hence the masked padding.
    for (const topK of [1, 2, 20, 64]) {
      expect(compare({ topK }, topK, 64, 120, { masked: true })).toEqual({ decided: 120, steps: 120 });
      const combined = { topK, topP: 0.8, minP: 0.05, temperature: 0.7 };
      expect(compare(combined, topK + 1, 64, 120, { masked: true })).toEqual({ decided: 120, steps: 120 });
    }
    expect(compare({ topK: 100 }, 9, 128, 120, { masked: true })).toEqual({ decided: 120, steps: 120 });
    // Unmasked, padding ids may take candidate slots; top-k within the sampleable ones still always decides.
    expect(compare({ topK: 50 }, 10)).toEqual({ decided: 120, steps: 120 });
  });

  // The candidates decide a good share of these steps; the rest fall back to the full row.
  const stochastic: [string, GenerateOptions][] = [
    ['plain sampling', {}],
    ['low temperature', { temperature: 0.3 }],
    ['high temperature', { temperature: 1.7 }],
    ['near-zero temperature', { temperature: 1e-4 }],
    ['top-p 0.5', { topP: 0.5 }],
    ['top-p 0.9 at T 0.7', { topP: 0.9, temperature: 0.7 }],
    ['min-p 0.05', { minP: 0.05 }],
    ['min-p 0.3 at T 2', { minP: 0.3, temperature: 2 }],
    ['top-k past K', { topK: 500 }],
    ['top-k past K with top-p', { topK: 300, topP: 0.7 }],
    ['everything', { topK: 40, topP: 0.9, minP: 0.02, temperature: 0.8 }],
  ];
  test.each(stochastic)('%s: identical tokens whenever the candidates decide', (_, options) => {
    const outcome = compare(options, 7);
    expect(outcome.decided).toBeGreaterThan(0);
  });

  const adjusted: [string, GenerateOptions][] = [
    ['repetition penalty', { repetitionPenalty: 1.3, topP: 0.9 }],
    ['presence and frequency penalties', { presencePenalty: 0.8, frequencyPenalty: 0.5 }],
    ['negative logit bias', { logitBias: { 0: -100, 1: -5, 2: -0.5 }, minP: 0.1 }],
    ['greedy with penalties', { temperature: 0, repetitionPenalty: 1.5, frequencyPenalty: 1 }],
    ['repetition penalty below 1 (raises seen tokens)', { repetitionPenalty: 0.7, topK: 10 }],
    ['negative presence penalty', { presencePenalty: -1.5, temperature: 0.5 }],
    ['positive logit bias', { logitBias: { 1234: 6, 17: 100 }, topP: 0.8 }],
    ['top-p 0.99 at T 1.3 (a nucleus the candidates rarely cover)', { topP: 0.99, temperature: 1.3 }],
  ];
  test.each(adjusted)('%s: identical tokens whenever the candidates decide', (_, options) => {
    compare(options, 11);
  });

  test('ignoreEos bans eos on both paths', () => {
    compare({ ignoreEos: true, temperature: 0.5 }, 5, 64, 120, { eosTokenId: 3 });
    compare({ ignoreEos: true, temperature: 0 }, 6, 64, 120, { eosTokenId: 3 });
  });

  test('many seeds and mixed options', () => {
    const rng = new SeededRng(99);
    for (let trial = 0; trial < 30; trial++) {
      const options: GenerateOptions = {
        temperature: rng.nextFloat() < 0.2 ? 0 : 0.2 + 1.8 * rng.nextFloat(),
        topK: rng.nextFloat() < 0.5 ? 0 : 1 + floor(rng.nextFloat() * 200),
        topP: rng.nextFloat() < 0.5 ? 1 : 0.3 + 0.7 * rng.nextFloat(),
        minP: rng.nextFloat() < 0.5 ? 0 : 0.3 * rng.nextFloat(),
        repetitionPenalty: rng.nextFloat() < 0.5 ? 1 : 0.8 + 0.6 * rng.nextFloat(),
        presencePenalty: rng.nextFloat() < 0.7 ? 0 : 2 * rng.nextFloat() - 1,
      };
      compare(options, 200 + trial, rng.nextFloat() < 0.5 ? 64 : 256, 40, { masked: rng.nextFloat() < 0.5 });
    }
  });

  test('a vocabulary the candidates cover entirely', () => {
    const size = 50;
    for (const options of [{}, { topP: 0.9 }, { minP: 0.1 }, { temperature: 0 }]) {
      const a = new Sampler(parseGenerateOptions({ seed: 3, ...options }), { sampleableVocabSize: size });
      const b = new Sampler(parseGenerateOptions({ seed: 3, ...options }), { sampleableVocabSize: size });
      const rng = new SeededRng(4);
      for (let step = 0; step < 200; step++) {
        const row = Float32Array.from({ length: size }, () => gaussian(rng) * 2);
        const order = Array.from(row.keys());
        const lse = log(row.reduce((sum, x) => sum + exp(x), 0));
        const token = a.sampleFromCandidates({ ids: Int32Array.from(order), logits: row, logSumExp: lse }) ?? a.sample(row);
        expect(token).toBe(b.sample(row));
      }
    }
  });
});

describe('candidate path: when it must fall back', () => {
  test('top-p whose nucleus the candidates do not cover returns null and leaves the draw for the full row', () => {
    const rng = new SeededRng(8);
    const row = Float32Array.from({ length: ROW }, () => gaussian(rng) * 0.1); // nearly uniform
    const options = parseGenerateOptions({ seed: 5, topP: 0.9 });
    const a = new Sampler(options, { sampleableVocabSize: SIZE });
    const b = new Sampler(options, { sampleableVocabSize: SIZE });
    expect(a.sampleFromCandidates(candidatesOf(row, 64))).toBeNull();
    expect(a.sample(row)).toBe(b.sample(row));
  });

  test('a positive bias on a token outside the candidates forces the full row', () => {
    const rng = new SeededRng(9);
    const row = Float32Array.from({ length: ROW }, () => gaussian(rng));
    const candidates = candidatesOf(row, 64);
    const outside = Array.from(row.keys()).find((id) => id < SIZE && !candidates.ids.includes(id)) ?? 0;
    const sampler = new Sampler(parseGenerateOptions({ temperature: 0, logitBias: { [outside]: 100 } }), { sampleableVocabSize: SIZE });
    expect(sampler.needsFullRow).toBe(true);
    expect(sampler.sampleFromCandidates(candidates)).toBeNull();
    expect(sampler.sample(row)).toBe(outside);
  });

  test('needsFullRow is set only by options that can raise a token', () => {
    const needs = (options: GenerateOptions) => new Sampler(parseGenerateOptions(options), { sampleableVocabSize: SIZE }).needsFullRow;
    expect(needs({})).toBe(false);
    expect(needs({ repetitionPenalty: 1.2, presencePenalty: 0.5, frequencyPenalty: 0.5, logitBias: { 1: -100 } })).toBe(false);
    expect(needs({ repetitionPenalty: 0.9 })).toBe(true);
    expect(needs({ presencePenalty: -0.1 })).toBe(true);
    expect(needs({ frequencyPenalty: -0.1 })).toBe(true);
    expect(needs({ logitBias: { 1: 0.5 } })).toBe(true);
  });

  test('a log-sum-exp below the candidates own is reported', () => {
    const row = Float32Array.from({ length: ROW }, (_, id) => (id % 7) - 3);
    const candidates = { ...candidatesOf(row, 64), logSumExp: 0 };
    const sampler = new Sampler(parseGenerateOptions({}), { sampleableVocabSize: SIZE });
    expect(() => sampler.sampleFromCandidates(candidates)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});
