import { FlashMptError } from '../lib/errors';
import { GenerateOptions, parseGenerateOptions, Sampler, SeededRng } from '../lib/sampling';

// Hot loops use these, not Math.*: global lookups are slow inside jest's vm context.
const { sqrt, log, cos, exp, abs, PI } = Math;

type Truncation = { temperature?: number; topK?: number; topP?: number; minP?: number };

const DRAWS = 20_000;
/** Total-variation tolerance for DRAWS draws over a few dozen tokens (sampling noise is ≈ 0.01). */
const TOLERANCE = 0.03;

function makeSampler(options: GenerateOptions, size: number, eosTokenId?: number): Sampler {
  return new Sampler(parseGenerateOptions({ seed: 1, ...options }), { sampleableVocabSize: size, eosTokenId });
}

function normalRow(length: number, scale: number, seed: number): Float32Array {
  const rng = new SeededRng(seed);
  return Float32Array.from({ length }, () => scale * sqrt(-2 * log(1 - rng.nextFloat())) * cos(2 * PI * rng.nextFloat()));
}

function frequencies(sampler: Sampler, logits: Float32Array, size: number, draws = DRAWS): number[] {
  const counts = new Array<number>(size).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.sample(logits)]++;
  return counts.map((count) => count / draws);
}

/**
 * The distribution each option's definition gives, written independently of the sampler: softmax at the
 * temperature, keep the k best, then the smallest prefix with mass ≥ p (of the top-k distribution), then
 * tokens with p ≥ minP · pmax.
 */
function referenceDistribution(logits: ArrayLike<number>, opts: Truncation): number[] {
  const { temperature = 1, topK = 0, topP = 1, minP = 0 } = opts;
  const n = logits.length;
  const order = Array.from({ length: n }, (_, id) => id).sort((a, b) => logits[b] - logits[a] || a - b);
  const weights = order.map((id) => exp((logits[id] - logits[order[0]]) / temperature));
  let kept = topK > 0 ? Math.min(topK, n) : n;
  const topKMass = weights.slice(0, kept).reduce((a, b) => a + b, 0);
  let running = 0;
  for (let rank = 0; rank < kept; rank++) {
    running += weights[rank] / topKMass;
    if (running >= topP) {
      kept = rank + 1;
      break;
    }
  }
  kept = Math.min(kept, weights.filter((w) => w >= minP * weights[0]).length);
  const keptMass = weights.slice(0, kept).reduce((a, b) => a + b, 0);
  const probs = new Array<number>(n).fill(0);
  for (let rank = 0; rank < kept; rank++) probs[order[rank]] = weights[rank] / keptMass;
  return probs;
}

function totalVariation(p: number[], q: number[]): number {
  return p.reduce((sum, pi, i) => sum + abs(pi - q[i]), 0) / 2;
}

function entropy(p: number[]): number {
  return -p.reduce((sum, pi) => (pi > 0 ? sum + pi * log(pi) : sum), 0);
}

function support(p: number[]): number[] {
  return p.flatMap((pi, id) => (pi > 0 ? [id] : []));
}

describe('Sampler: seeds', () => {
  const size = 200;
  const rows = Array.from({ length: 64 }, (_, i) => normalRow(size, 2, 100 + i));
  const generate = (options: GenerateOptions) => {
    const sampler = makeSampler(options, size);
    sampler.setPrompt([1, 2, 3]);
    return rows.map((row) => {
      const token = sampler.sample(row);
      sampler.accept(token);
      return token;
    });
  };

  test('the same seed and logits give the same tokens', () => {
    const options = { seed: 1234, temperature: 0.9, topP: 0.95, repetitionPenalty: 1.1, frequencyPenalty: 0.3 };
    expect(generate(options)).toEqual(generate(options));
  });

  test('different seeds give different tokens', () => {
    expect(generate({ seed: 1 })).not.toEqual(generate({ seed: 2 }));
  });

  test('without a seed runs differ', () => {
    expect(generate({ seed: undefined })).not.toEqual(generate({ seed: undefined }));
  });
});

describe('Sampler: greedy', () => {
  test('temperature 0 takes the argmax, ties to the lowest id', () => {
    const sampler = makeSampler({ temperature: 0 }, 6);
    expect(sampler.sample(Float32Array.of(0, 3, 1, 3, -2, 2))).toBe(1);
    expect(sampler.sample(Float32Array.of(5, 5, 5, 5, 5, 5))).toBe(0);
  });

  test('with bias, penalties, a banned eos, NaN and ties: the argmax of the processed row, ties to the lowest id', () => {
    const size = 300;
    const eos = 3;
    // Token 1's bias lifts its raw 1 onto the row's usual maximum, 2: a tie that only the lower id may win.
    const options = { temperature: 0, ignoreEos: true, logitBias: { 1: 1, 17: -2, 40: 0.5 }, repetitionPenalty: 1.3, presencePenalty: 0.2, frequencyPenalty: 0.1 };
    const sampler = makeSampler(options, size, eos);
    const prompt = [7, 8, 9, 40, 41];
    sampler.setPrompt(prompt);
    const counts = new Map<number, number>();
    const rng = new SeededRng(11);
    for (let step = 0; step < 60; step++) {
      // Logits 0, 1 or 2, so that ties are common; a few NaNs.
      const row = Float32Array.from({ length: size }, () => (rng.nextFloat() < 0.02 ? NaN : Math.floor(rng.nextFloat() * 3)));
      let want = -1;
      let wantLogit = -Infinity;
      for (let id = 0; id < size; id++) {
        let logit = row[id] + ((options.logitBias as Record<number, number>)[id] ?? 0);
        const count = counts.get(id) ?? 0;
        if (prompt.includes(id) || count > 0) logit = logit > 0 ? logit / 1.3 : logit * 1.3;
        if (count > 0) logit -= count * 0.1 + 0.2;
        if (id === eos || Number.isNaN(logit)) logit = -Infinity;
        if (logit > wantLogit) {
          wantLogit = logit;
          want = id;
        }
      }
      const got = sampler.sample(row);
      expect(got).toBe(want);
      sampler.accept(got);
      counts.set(got, (counts.get(got) ?? 0) + 1);
    }
  });

  test('truncation options do not change the argmax', () => {
    const row = normalRow(500, 3, 7);
    const argmax = row.indexOf(Math.max(...row));
    for (const options of [{ topK: 3 }, { topP: 0.1 }, { minP: 0.5 }]) {
      expect(makeSampler({ temperature: 0, ...options }, 500).sample(row)).toBe(argmax);
    }
  });
});

describe('Sampler: each option shapes the distribution as defined', () => {
  const size = 40;
  const row = normalRow(size, 1.5, 42);

  test('plain sampling follows the softmax', () => {
    expect(totalVariation(frequencies(makeSampler({}, size), row, size), referenceDistribution(row, {}))).toBeLessThan(TOLERANCE);
  });

  test('lower temperature concentrates the distribution: entropy falls', () => {
    const entropies = [4, 2, 1, 0.5, 0.25].map((temperature) => {
      const freq = frequencies(makeSampler({ temperature }, size), row, size);
      expect(totalVariation(freq, referenceDistribution(row, { temperature }))).toBeLessThan(TOLERANCE);
      return entropy(freq);
    });
    for (let i = 1; i < entropies.length; i++) expect(entropies[i]).toBeLessThan(entropies[i - 1]);
  });

  test('top-k never picks outside the k best', () => {
    const wide = normalRow(1000, 1, 5);
    const best = new Set(Array.from({ length: 1000 }, (_, id) => id).sort((a, b) => wide[b] - wide[a]).slice(0, 7));
    const freq = frequencies(makeSampler({ topK: 7 }, 1000), wide, 1000);
    expect(support(freq).every((id) => best.has(id))).toBe(true);
    expect(new Set(support(freq))).toEqual(best);
    expect(totalVariation(freq, referenceDistribution(wide, { topK: 7 }))).toBeLessThan(TOLERANCE);
  });

  test("top-p keeps exactly the smallest prefix whose mass reaches p", () => {
    // Evenly spaced logits: every token in the nucleus is likely enough to show up.
    const ramp = Float32Array.from({ length: size }, (_, id) => -0.15 * id);
    for (const topP of [0.3, 0.6, 0.9]) {
      const expected = referenceDistribution(ramp, { topP });
      const nucleus = support(expected);
      // Smallest: without its last token the prefix falls short of p.
      const probs = referenceDistribution(ramp, {});
      const mass = nucleus.reduce((sum, id) => sum + probs[id], 0);
      expect(mass).toBeGreaterThanOrEqual(topP);
      expect(mass - probs[nucleus[nucleus.length - 1]]).toBeLessThan(topP);
      const freq = frequencies(makeSampler({ topP }, size), ramp, size);
      expect(support(freq)).toEqual(nucleus);
      expect(totalVariation(freq, expected)).toBeLessThan(TOLERANCE);
    }
  });

  test('top-p applies to the top-k distribution', () => {
    const expected = referenceDistribution(row, { topK: 10, topP: 0.8 });
    expect(totalVariation(frequencies(makeSampler({ topK: 10, topP: 0.8 }, size), row, size), expected)).toBeLessThan(TOLERANCE);
  });

  test('min-p drops tokens below minP × pmax', () => {
    for (const minP of [0.05, 0.2, 0.5]) {
      const probs = referenceDistribution(row, {});
      const pmax = Math.max(...probs);
      const freq = frequencies(makeSampler({ minP }, size), row, size);
      expect(support(freq)).toEqual(support(probs.map((p) => (p >= minP * pmax ? p : 0))));
      expect(totalVariation(freq, referenceDistribution(row, { minP }))).toBeLessThan(TOLERANCE);
    }
  });

  test('top-k, top-p, min-p and temperature combine in that order', () => {
    const options = { temperature: 0.7, topK: 12, topP: 0.9, minP: 0.02 };
    expect(totalVariation(frequencies(makeSampler(options, size), row, size), referenceDistribution(row, options))).toBeLessThan(TOLERANCE);
  });

  test('repetition penalty follows transformers: positive logits divided, negative multiplied, over prompt and output', () => {
    const logits = Float32Array.of(2, 1.5, -1, 0.5, -0.2, 1.2);
    const greedy = makeSampler({ temperature: 0, repetitionPenalty: 2 }, 6);
    greedy.setPrompt([0]);
    expect(greedy.sample(logits)).toBe(1); // 2 → 1 falls below 1.5

    const sampler = makeSampler({ repetitionPenalty: 1.8 }, 6);
    sampler.setPrompt([0, 2]);
    sampler.accept(4);
    const penalized = [2 / 1.8, 1.5, -1 * 1.8, 0.5, -0.2 * 1.8, 1.2];
    expect(totalVariation(frequencies(sampler, logits, 6), referenceDistribution(penalized, {}))).toBeLessThan(TOLERANCE);
  });

  test('a new prompt replaces the earlier one: its tokens alone count as seen, generated ones stay', () => {
    const logits = Float32Array.of(2, 1.9, 1.8, 1.7, 1.6, 1.5);
    const replaced = makeSampler({ temperature: 0, repetitionPenalty: 2 }, 6);
    replaced.setPrompt([0, 1, 1]);
    expect(replaced.sample(logits)).toBe(2); // 2 and 1.9 halved
    replaced.accept(2);
    replaced.setPrompt([3, 0]);
    expect(replaced.sample(logits)).toBe(1); // 0 (prompt), 2 (generated) and 3 (prompt) halved; 1 no longer
    replaced.setPrompt([]);
    expect(replaced.sample(logits)).toBe(0); // only the generated 2 stays penalized

    // The candidate path sees the same penalties (a prompt token the candidates lack would be a raised unseen one).
    const raising = makeSampler({ temperature: 0, repetitionPenalty: 0.5 }, 6);
    raising.setPrompt([5]);
    raising.setPrompt([4]);
    const candidates = { ids: Int32Array.of(0, 1, 2), logits: logits.slice(0, 3), logSumExp: 3.5 };
    expect(raising.sampleFromCandidates(candidates)).toBeNull(); // 4, doubled to 3.2, is not among them
    expect(raising.sample(logits)).toBe(4);
  });

  test('presence and frequency penalties follow OpenAI: logit − count × frequency − (count > 0) × presence, over output only', () => {
    const logits = Float32Array.of(1, 0.5, 0.8, -0.3, 0.2);
    const sampler = makeSampler({ presencePenalty: 0.6, frequencyPenalty: 0.4 }, 5);
    sampler.setPrompt([3, 3, 3]); // the prompt does not count
    for (const id of [0, 0, 0, 2]) sampler.accept(id);
    const penalized = [1 - 3 * 0.4 - 0.6, 0.5, 0.8 - 0.4 - 0.6, -0.3, 0.2];
    expect(totalVariation(frequencies(sampler, logits, 5), referenceDistribution(penalized, {}))).toBeLessThan(TOLERANCE);

    const boosting = makeSampler({ temperature: 0, presencePenalty: -1 }, 5);
    boosting.accept(4);
    expect(boosting.sample(logits)).toBe(4); // 0.2 + 1 beats 1
  });

  test('logit bias: −100 bans a token, +100 forces it', () => {
    const argmax = row.indexOf(Math.max(...row));
    const banned = frequencies(makeSampler({ logitBias: { [argmax]: -100 } }, size), row, size);
    expect(banned[argmax]).toBe(0);
    const argmin = row.indexOf(Math.min(...row));
    expect(frequencies(makeSampler({ logitBias: { [argmin]: 100 } }, size), row, size)[argmin]).toBe(1);
    const shifted = Array.from(row, (logit, id) => (id === 3 ? logit + 1.5 : logit));
    const biased = frequencies(makeSampler({ logitBias: { 3: 1.5 } }, size), row, size);
    expect(totalVariation(biased, referenceDistribution(shifted, {}))).toBeLessThan(TOLERANCE);
  });

  test('ignoreEos: the eos token is never sampled', () => {
    const logits = Float32Array.of(0, 0, 10, 0);
    expect(makeSampler({ temperature: 0, ignoreEos: true }, 4, 2).sample(logits)).not.toBe(2);
    expect(makeSampler({ temperature: 0 }, 4, 2).sample(logits)).toBe(2);
  });
});

describe('Sampler: tokens that must never be sampled', () => {
  test('ids ≥ sampleableVocabSize are never sampled, even with a huge logit', () => {
    const logits = normalRow(64, 1, 3);
    logits[50] = 1e30;
    logits[63] = 3e38;
    expect(makeSampler({ temperature: 0 }, 50).sample(logits)).toBeLessThan(50);
    for (const options of [{}, { topK: 1 }, { topP: 0.5 }, { temperature: 5 }]) {
      const freq = frequencies(makeSampler(options, 50), logits, 50, 2000);
      expect(freq.reduce((a, b) => a + b, 0)).toBeCloseTo(1);
    }
  });

  test('NaN logits are never sampled; a row with nothing sampleable is an error', () => {
    const logits = Float32Array.of(NaN, -1, NaN, -3);
    expect(support(frequencies(makeSampler({}, 4), logits, 4, 2000))).toEqual([1, 3]);
    expect(makeSampler({ temperature: 0 }, 4).sample(logits)).toBe(1);
    const none = Float32Array.of(-Infinity, NaN, -Infinity);
    for (const temperature of [0, 1]) {
      expect(() => makeSampler({ temperature }, 3).sample(none)).toThrow(FlashMptError);
    }
  });

  test('bad arguments give typed errors', () => {
    expect(() => makeSampler({}, 10).sample(new Float32Array(9))).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => makeSampler({ logitBias: { 10: 1 } }, 10)).toThrow(expect.objectContaining({ code: 'E_TOKEN_RANGE' }));
    expect(() => makeSampler({}, 10).accept(-1)).toThrow(expect.objectContaining({ code: 'E_TOKEN_RANGE' }));
  });
});

/**
 * The documented draw, by brute force: rank by (logit desc, id asc); keep top-k, then top-p's prefix (over the
 * top-k mass), then min-p's; draw u · mass by walking the first HEAD ranks in rank order, then the other kept
 * tokens in id order. Masses of sets that reach past the head are summed in id order, as the sampler does.
 * Returns the draw as a function of u.
 */
function referenceDraw(logits: Float32Array, size: number, opts: Truncation): (uniform: number) => number {
  const { temperature = 1, topK = 0, topP = 1, minP = 0 } = opts;
  const HEAD = 1024;
  const order = Array.from({ length: size }, (_, id) => id).sort((a, b) => logits[b] - logits[a] || a - b);
  const rankOf = new Int32Array(size);
  order.forEach((id, rank) => (rankOf[id] = rank));
  const weights = Array.from({ length: size }, (_, id) => exp((logits[id] - logits[order[0]]) / temperature));
  const massOfTop = (count: number) => {
    let mass = 0;
    if (count <= HEAD && count < size) for (let rank = 0; rank < count; rank++) mass += weights[order[rank]];
    else for (let id = 0; id < size; id++) if (rankOf[id] < count) mass += weights[id];
    return mass;
  };
  const topKCount = topK > 0 && topK < size ? topK : size;
  let kept = topKCount;
  if (minP > 0) kept = Math.min(kept, weights.filter((w) => w >= minP).length);
  if (topP < 1) {
    const threshold = topP * massOfTop(topKCount);
    let running = 0;
    for (let rank = 0; rank < kept; rank++) {
      running += weights[order[rank]];
      if (running >= threshold) {
        kept = rank + 1;
        break;
      }
    }
  }
  const keptMass = massOfTop(kept);
  return (uniform) => {
    const target = uniform * keptMass;
    let running = 0;
    for (let rank = 0; rank < Math.min(kept, HEAD); rank++) {
      running += weights[order[rank]];
      if (running > target) return order[rank];
    }
    for (let id = 0; id < size; id++) {
      if (rankOf[id] < HEAD || rankOf[id] >= kept) continue;
      running += weights[id];
      if (running > target) return id;
    }
    throw new Error('the target fell past the end of the mass');
  };
}

describe('Sampler: a 50k vocabulary, token for token against the documented draw', () => {
  const size = 50277;
  // [title, logit scale, options, quantum]: a quantum (0 = none) rounds the logits into many exact ties, as bf16 does.
  const cases: [string, number, Truncation, number][] = [
    ['peaked: plain', 4, {}, 0],
    ['peaked: top-k 40', 4, { topK: 40 }, 0],
    ['peaked: top-p 0.9 at T 0.8', 4, { topP: 0.9, temperature: 0.8 }, 0],
    ['peaked: min-p 0.05', 4, { minP: 0.05 }, 0],
    ['flat: plain (draws past the head)', 1, {}, 0],
    ['flat: top-k 5000', 1, { topK: 5000 }, 0],
    ['flat: top-p 0.6 (a nucleus past the head)', 1, { topP: 0.6 }, 0],
    ['flat: min-p 0.1 (past the head)', 1, { minP: 0.1 }, 0],
    ['flat: all three', 1, { topK: 20000, topP: 0.8, minP: 0.05, temperature: 1.5 }, 0],
    ['ties: plain', 1, {}, 0.25],
    ['ties: top-k 3000', 1, { topK: 3000 }, 0.25],
    ['ties: top-p 0.5', 1, { topP: 0.5 }, 0.25],
    ['ties: min-p 0.2 at T 0.7', 2, { minP: 0.2, temperature: 0.7 }, 0.5],
  ];
  test.each(cases)('%s', (_, scale, options, quantum) => {
    const row = normalRow(50432, scale, 9);
    if (quantum) for (let i = 0; i < row.length; i++) row[i] = Math.round(row[i] / quantum) * quantum;
    const sampler = makeSampler({ seed: 77, ...options }, size);
    const uniforms = new SeededRng(77);
    const expected = referenceDraw(row, size, options);
    for (let draw = 0; draw < 100; draw++) expect(sampler.sample(row)).toBe(expected(uniforms.nextFloat()));
  });
});
