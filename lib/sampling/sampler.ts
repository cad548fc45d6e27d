/**
 * The sampling policy: turns a row of logits into the next token under the generation options. Two entry
 * points pick the same token for the same RNG state: `sample` reads the full row; `sampleFromCandidates`
 * reads only the row's top-K and its log-sum-exp (what a GPU can hand over cheaply) and answers only when that
 * is provably enough, else null.
 *
 * Both paths rank tokens by processed logit (bias, penalties; temperature does not change the order), ties to
 * the lower id, and run the same `chooseToken` on that ranking (see ranking.ts). The candidate path knows a
 * prefix of it: every candidate that no unseen token can outrank. Unseen tokens can only have been lowered by
 * processing (options that can raise a token bail out when such a token is unseen), so each has a raw logit,
 * hence a processed logit, at most the candidates' smallest raw logit; with the log-sum-exp this bounds their
 * total weight, and the candidate path answers only when no value within the bounds changes the token.
 */
import { FlashMptError } from '../errors';
import type { ResolvedGenerateOptions } from './options';
import { chooseToken, HEAD_RANKS, MassRange, Ranking, RowRanking, tokenWeight, Truncation } from './ranking';
import { SeededRng } from './rng';

/** What the GPU hands over instead of the full row. */
export interface Candidates {
  /**
   * The row's K best ids by raw logit, ties to the lower id (so an unseen token never ties a candidate and
   * outranks it). Order within the set does not matter. Ids ≥ sampleableVocabSize may be among them.
   */
  ids: Int32Array;
  /** Their raw logits, bit-identical to the full row's. */
  logits: Float32Array;
  /** log Σ exp(logit) over the unprocessed row: at least every id the candidates were chosen from. */
  logSumExp: number;
}

export interface SamplerVocab {
  /** Ids ≥ this are never sampled (e.g. 50277 for the seed model, whose rows go to 50432). */
  sampleableVocabSize: number;
  /** Banned when options.ignoreEos is set, so generation runs to maxTokens. */
  eosTokenId?: number;
}

const IN_PROMPT = 1;
const GENERATED = 2;

/** Relative error tolerated in the caller's logSumExp: fp32 reductions and fast exp on the GPU. */
const LOG_SUM_EXP_SLACK = 1e-4;
/** Relative difference between float64 sums of the same weights taken in different orders (≪ for 50k terms). */
const SUMMATION_SLACK = 1e-9;

// The hot loop reads a module constant, not the global: global lookups are slow inside vm contexts (jest).
const NEGATIVE_INFINITY = -Infinity;

// Shared by every sampler: sample() is synchronous and keeps nothing here between calls.
let scratchLogits = new Float64Array(0);
let scratchMarks = new Uint8Array(0);

export class Sampler {
  /**
   * True when the options can raise a token the candidate set may not hold (positive logit bias, repetition
   * penalty < 1, negative presence/frequency penalty): the candidate path would mostly return null, so the
   * caller should fetch the full row directly. The candidate path stays correct either way.
   */
  readonly needsFullRow: boolean;
  /**
   * For plain greedy decoding (temperature 0, no bias, no penalties) the id it bans (-1: none), else null: such a
   * sampler picks the raw argmax, which the engine can pick itself (NativeEngine.decodeGreedy).
   */
  readonly greedyBannedId: number | null;

  private readonly vocabSize: number;
  private readonly temperature: number;
  private readonly truncation: Truncation;
  private readonly repetitionPenalty: number;
  private readonly presencePenalty: number;
  private readonly frequencyPenalty: number;
  private readonly logitBias: ReadonlyMap<number, number>;
  private readonly bannedId: number;
  private readonly rng: SeededRng;
  /**
   * Bit set per token: IN_PROMPT, GENERATED — only with a repetition penalty, the one option that reads it; the
   * generated counts only with a presence or frequency penalty. A plain request allocates neither (250 kB of the 50k
   * vocabulary zeroed per request, a host cost of every prompt at 64 concurrent).
   */
  private readonly seen: Uint8Array | null;
  private readonly generatedCount: Uint32Array | null;
  /** 1 where processing changes a token's logit; lets the full-row pass skip the lookups for all others. */
  private readonly adjusted: Uint8Array;
  /** The ids whose `adjusted` is 1, each once. */
  private adjustedIds: number[] = [];
  /** The current prompt's ids below vocabSize, each once (their IN_PROMPT bits). */
  private promptIds: number[] = [];
  /** Drawn by a candidate attempt that returned null; the full-row call that follows uses it. */
  private pendingUniform: number | undefined;

  constructor(options: ResolvedGenerateOptions, vocab: SamplerVocab) {
    const size = vocab.sampleableVocabSize;
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new FlashMptError('E_INVALID_ARGUMENT', `sampleableVocabSize must be a positive integer, got ${size}`);
    }
    for (const id of options.logitBias.keys()) {
      if (id >= size) {
        throw new FlashMptError('E_TOKEN_RANGE', `logitBias names token ${id}, outside the ${size} sampleable tokens`);
      }
    }
    this.vocabSize = size;
    this.temperature = options.temperature;
    this.truncation = { topK: options.topK, topP: options.topP, minP: options.minP };
    this.repetitionPenalty = options.repetitionPenalty;
    this.presencePenalty = options.presencePenalty;
    this.frequencyPenalty = options.frequencyPenalty;
    this.logitBias = options.logitBias;
    this.bannedId = options.ignoreEos && vocab.eosTokenId !== undefined ? vocab.eosTokenId : -1;
    this.rng = new SeededRng(options.seed ?? SeededRng.randomSeed());
    this.seen = this.repetitionPenalty !== 1 ? new Uint8Array(size) : null;
    this.generatedCount = this.presencePenalty !== 0 || this.frequencyPenalty !== 0 ? new Uint32Array(size) : null;
    this.adjusted = new Uint8Array(size);
    for (const id of this.logitBias.keys()) this.refreshAdjusted(id);
    if (this.bannedId >= 0 && this.bannedId < size) this.refreshAdjusted(this.bannedId);

    const raisesByBias = [...this.logitBias].some(([id, bias]) => bias > 0 && id !== this.bannedId);
    this.needsFullRow = raisesByBias || this.repetitionPenalty < 1 || this.presencePenalty < 0 || this.frequencyPenalty < 0;
    const plainGreedy =
      this.temperature === 0 && this.logitBias.size === 0 && this.repetitionPenalty === 1 && this.presencePenalty === 0 && this.frequencyPenalty === 0;
    this.greedyBannedId = plainGreedy ? this.bannedId : null;
  }

  /**
   * The prompt's tokens, which the repetition penalty counts as seen. Replaces any earlier prompt. Touches only the
   * ids of the two prompts, not the whole vocabulary (a request's set-up: 0.8 ms per request on the 50k vocabulary
   * took ~50 ms of host time from a round of 64 concurrent requests, H100 host, session 7).
   */
  setPrompt(ids: ArrayLike<number>): void {
    const seen = this.seen;
    if (seen === null) return; // no repetition penalty: the prompt changes no logit
    const previous = this.promptIds;
    for (const id of previous) seen[id] &= ~IN_PROMPT;
    const marked: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id >= 0 && id < this.vocabSize && (seen[id] & IN_PROMPT) === 0) {
        seen[id] |= IN_PROMPT;
        marked.push(id);
      }
    }
    this.promptIds = marked;
    for (const id of previous) this.refreshAdjusted(id);
    for (const id of marked) this.refreshAdjusted(id);
    if (previous.length > 0) this.adjustedIds = this.adjustedIds.filter((id) => this.adjusted[id] !== 0);
  }

  /** Records a generated token for the penalties. */
  accept(tokenId: number): void {
    if (!Number.isSafeInteger(tokenId) || tokenId < 0) {
      throw new FlashMptError('E_TOKEN_RANGE', `accepted token id must be a non-negative integer, got ${tokenId}`);
    }
    if (tokenId >= this.vocabSize) return; // never sampled, so no penalty could ever apply to it
    if (this.seen === null && this.generatedCount === null) return; // no penalty counts it
    if (this.generatedCount !== null) this.generatedCount[tokenId]++;
    if (this.seen !== null) this.seen[tokenId] |= GENERATED;
    this.refreshAdjusted(tokenId);
  }

  /** Picks a token from a full row of raw logits (length ≥ sampleableVocabSize; the rest is ignored). */
  sample(logits: Float32Array): number {
    const size = this.vocabSize;
    if (logits.length < size) {
      const message = `the logits row has ${logits.length} entries, fewer than the ${size} sampleable tokens`;
      throw new FlashMptError('E_INVALID_ARGUMENT', message);
    }
    if (this.temperature === 0) {
      // The raw logits of the ids processing leaves alone, then the processed adjusted ones: the argmax of the
      // processed row (NaN as -Infinity, ties to the lower id) without a lookup per id.
      const adjusted = this.adjusted;
      let best = -1;
      let bestLogit = NEGATIVE_INFINITY;
      for (let id = 0; id < size; id++) {
        if (adjusted[id] !== 0) continue;
        const logit = logits[id];
        if (logit > bestLogit) {
          bestLogit = logit;
          best = id;
        }
      }
      for (const id of this.adjustedIds) {
        const logit = this.processedLogit(logits[id], id);
        if (logit > bestLogit || (logit === bestLogit && id < best)) {
          bestLogit = logit;
          best = id;
        }
      }
      checkMaxLogit(bestLogit);
      this.takeUniform();
      return best;
    }

    if (scratchLogits.length < size) scratchLogits = new Float64Array(size);
    const processed = scratchLogits;
    let maxLogit = -Infinity;
    for (let id = 0; id < size; id++) {
      const logit = this.processedLogit(logits[id], id);
      processed[id] = logit;
      if (logit > maxLogit) maxLogit = logit;
    }
    checkMaxLogit(maxLogit);
    const token = chooseToken(new RowRanking(processed, size, maxLogit, this.temperature), this.truncation, this.takeUniform());
    if (token === null) throw new FlashMptError('E_INTERNAL', 'the full row left a sampling decision open');
    return token;
  }

  /**
   * Picks a token from the row's top-K candidates when they determine it, else returns null without consuming
   * randomness (the caller then fetches the full row and calls sample()). Always decides for greedy and for
   * top-k ≤ K unless processing pushed candidates below unseen tokens.
   */
  sampleFromCandidates(candidates: Candidates): number | null {
    const { ids, logits, logSumExp } = candidates;
    const count = ids.length;
    if (count === 0 || logits.length !== count) {
      throw new FlashMptError('E_INVALID_ARGUMENT', `candidates need as many logits as ids (got ${count} ids, ${logits.length} logits)`);
    }
    let floor = Infinity;
    let rawMax = -Infinity;
    for (let j = 0; j < count; j++) {
      const raw = logits[j];
      if (Number.isNaN(raw) || raw === Infinity) return null; // the full row decides, or reports it
      if (raw < floor) floor = raw;
      if (raw > rawMax) rawMax = raw;
    }
    if (!Number.isFinite(logSumExp) || !(rawMax > -Infinity)) return null;
    if (this.needsFullRow && this.raisesUnseen(ids)) return null;

    // Split the sampleable candidates: the head ranks before every unseen token; the tail may not. Greedy needs
    // only the head's best (ties to the lower id): no arrays, no sort — it runs for every row of every step.
    const greedy = this.temperature === 0;
    let bestId = -1;
    let bestLogit = -Infinity;
    const headIds: number[] = [];
    const headLogits: number[] = [];
    const tailLogits: number[] = [];
    let sampleable = 0;
    for (let j = 0; j < count; j++) {
      const id = ids[j];
      if (id < 0 || id >= this.vocabSize) continue;
      sampleable++;
      const raw = logits[j];
      const logit = this.processedLogit(raw, id);
      if (logit > floor || (logit === floor && raw === floor)) {
        if (bestId < 0 || logit > bestLogit || (logit === bestLogit && id < bestId)) {
          bestId = id;
          bestLogit = logit;
        }
        if (!greedy) {
          headIds.push(id);
          headLogits.push(logit);
        }
      } else if (logit === floor) {
        return null; // lowered exactly onto the floor: unseen tokens tied there may rank either side of it
      } else if (!greedy) {
        tailLogits.push(logit);
      }
    }
    if (bestId < 0 || !(bestLogit > -Infinity)) return null;
    if (greedy) {
      this.takeUniform();
      return bestId;
    }

    const order = headIds.map((_, j) => j).sort((a, b) => headLogits[b] - headLogits[a] || headIds[a] - headIds[b]);
    const rankedIds = Int32Array.from(order, (j) => headIds[j]);
    const rankedLogits = Float64Array.from(order, (j) => headLogits[j]);
    const maxLogit = rankedLogits[0];
    const uniform = this.peekUniform();

    // Past the walked head the draw goes by id, so head candidates beyond it only add to the bound.
    const known = Math.min(rankedIds.length, HEAD_RANKS);
    for (let rank = known; rank < rankedIds.length; rank++) tailLogits.push(rankedLogits[rank]);
    const { topK } = this.truncation;
    const unseen = this.vocabSize - sampleable;
    const unseenKept = topK > 0 ? Math.min(unseen, Math.max(0, topK - rankedIds.length)) : unseen;
    let tailBound = 0;
    for (const logit of tailLogits) tailBound += tokenWeight(logit, maxLogit, this.temperature);
    if (unseenKept > 0) {
      tailBound += unseenWeightBound({ logits, logSumExp, rawMax, floor, maxLogit, temperature: this.temperature, unseenKept });
    }

    const ranking = new CandidateRanking(this.vocabSize, rankedIds.subarray(0, known), rankedLogits, maxLogit, this.temperature, tailBound);
    const token = chooseToken(ranking, this.truncation, uniform);
    if (token !== null) this.takeUniform();
    return token;
  }

  /** Bias, then repetition penalty, then presence/frequency penalties. NaN becomes -Infinity: never sampled. */
  private processedLogit(raw: number, id: number): number {
    let logit = raw;
    if (this.adjusted[id] !== 0) {
      if (id === this.bannedId) return NEGATIVE_INFINITY;
      logit += this.logitBias.get(id) ?? 0;
      if (this.seen !== null && this.seen[id] !== 0) {
        logit = logit > 0 ? logit / this.repetitionPenalty : logit * this.repetitionPenalty;
      }
      const count = this.generatedCount === null ? 0 : this.generatedCount[id];
      if (count > 0) logit -= count * this.frequencyPenalty + this.presencePenalty;
    }
    return logit === logit ? logit : NEGATIVE_INFINITY; // only NaN differs from itself
  }

  private refreshAdjusted(id: number): void {
    const active =
      id === this.bannedId ||
      this.logitBias.has(id) ||
      (this.seen !== null && this.seen[id] !== 0) ||
      (this.generatedCount !== null && this.generatedCount[id] > 0);
    if (active && this.adjusted[id] === 0) this.adjustedIds.push(id);
    this.adjusted[id] = active ? 1 : 0;
  }

  /** Whether processing may raise this token's logit (then an unseen raw logit no longer bounds it). */
  private mayRaise(id: number): boolean {
    if (id === this.bannedId) return false;
    const count = this.generatedCount === null ? 0 : this.generatedCount[id];
    return (
      (this.logitBias.get(id) ?? 0) > 0 ||
      (this.seen !== null && this.seen[id] !== 0 && this.repetitionPenalty < 1) ||
      (count > 0 && count * this.frequencyPenalty + this.presencePenalty < 0)
    );
  }

  /** True when some token that processing may raise is not among the candidates. */
  private raisesUnseen(ids: Int32Array): boolean {
    if (scratchMarks.length < this.vocabSize) scratchMarks = new Uint8Array(this.vocabSize);
    const marks = scratchMarks;
    for (const id of ids) if (id >= 0 && id < this.vocabSize) marks[id] = 1;
    const found = this.adjustedIds.some((id) => marks[id] === 0 && this.mayRaise(id));
    for (const id of ids) if (id >= 0 && id < this.vocabSize) marks[id] = 0;
    return found;
  }

  private peekUniform(): number {
    return (this.pendingUniform ??= this.rng.nextFloat());
  }

  private takeUniform(): number {
    const uniform = this.peekUniform();
    this.pendingUniform = undefined;
    return uniform;
  }
}

/** Why a row whose best processed logit is `maxLogit` cannot be sampled, or null when it can. */
export function unsampleableRowError(maxLogit: number): FlashMptError | null {
  if (maxLogit === Infinity) return new FlashMptError('E_INVALID_ARGUMENT', 'the logits row holds +Infinity');
  if (!(maxLogit > -Infinity)) {
    return new FlashMptError('E_INVALID_ARGUMENT', 'no token can be sampled: every sampleable logit is -Infinity or NaN');
  }
  return null;
}

function checkMaxLogit(maxLogit: number): void {
  const error = unsampleableRowError(maxLogit);
  if (error) throw error;
}

/**
 * Upper bound on Σ exp((l_j − maxLogit) / T) over the unseen tokens that can be kept, where each processed l_j
 * is at most its raw logit x_j ≤ floor. With a_j = exp(x_j − maxLogit) and R ≥ Σ a_j from the log-sum-exp:
 * every term is ≤ exp((floor − maxLogit) / T), so the sum is ≤ n of those; for T ≤ 1, a_j^(1/T) ≤ a_j ·
 * exp((floor − maxLogit)(1/T − 1)); for T > 1, Hölder gives Σ a_j^(1/T) ≤ n^(1 − 1/T) R^(1/T).
 */
function unseenWeightBound(args: {
  logits: Float32Array;
  logSumExp: number;
  rawMax: number;
  floor: number;
  maxLogit: number;
  temperature: number;
  unseenKept: number;
}): number {
  const { logits, logSumExp, rawMax, floor, maxLogit, temperature, unseenKept } = args;
  let candidateMass = 0;
  for (const raw of logits) candidateMass += Math.exp(raw - rawMax);
  const rowMass = Math.exp(logSumExp - rawMax);
  if (rowMass < candidateMass * (1 - LOG_SUM_EXP_SLACK)) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `logSumExp ${logSumExp} is below the log-sum-exp of the candidates themselves`);
  }
  const residual = Math.max(0, rowMass - candidateMass) + LOG_SUM_EXP_SLACK * rowMass;
  const logResidual = Math.log(residual) + rawMax - maxLogit;
  const logCount = Math.log(unseenKept);
  const floorGap = floor - maxLogit;
  const byCount = logCount + floorGap / temperature;
  const byMass =
    temperature <= 1
      ? logResidual + floorGap / temperature - floorGap
      : (1 - 1 / temperature) * logCount + logResidual / temperature;
  return Math.exp(Math.min(byCount, byMass));
}

/** The candidates' head as a ranking: known ranks, and bounds on any mass that reaches past them. */
class CandidateRanking implements Ranking {
  readonly known: number;
  private readonly running: Float64Array;

  constructor(
    readonly size: number,
    private readonly ids: Int32Array,
    private readonly logits: Float64Array,
    private readonly maxLogit: number,
    private readonly temperature: number,
    private readonly tailBound: number,
  ) {
    this.known = ids.length;
    this.running = new Float64Array(this.known);
    for (let rank = 0; rank < this.known; rank++) {
      this.running[rank] = (rank > 0 ? this.running[rank - 1] : 0) + this.weight(rank);
    }
  }

  id(rank: number): number {
    return this.ids[rank];
  }

  weight(rank: number): number {
    return tokenWeight(this.logits[rank], this.maxLogit, this.temperature);
  }

  mass(count: number): number {
    return count > 0 ? this.running[count - 1] : 0;
  }

  massOfTop(): MassRange {
    const knownMass = this.mass(this.known);
    return { lo: knownMass * (1 - SUMMATION_SLACK), hi: (knownMass + this.tailBound) * (1 + SUMMATION_SLACK) };
  }

  countWeighingAtLeast(): null {
    return null;
  }

  countReaching(): null {
    return null;
  }

  drawPastKnown(): null {
    return null;
  }
}
