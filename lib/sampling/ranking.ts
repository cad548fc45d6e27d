/**
 * Tokens ranked by processed logit (descending, ties to the lower id), with their sampling weights and running
 * masses. The full-row path and the candidate path expose the same interface and run the same decision code
 * (`chooseRank`), so on the ranks both know they compute bit-identical numbers and pick identical tokens.
 */

/** Weight of a token relative to the best one: exp((logit − max) / T). The one formula both paths use. */
export function tokenWeight(logit: number, maxLogit: number, temperature: number): number {
  return Math.exp((logit - maxLogit) / temperature);
}

/** A range holding a mass that one path knows exactly (lo === hi) and the other only within bounds. */
export interface MassRange {
  lo: number;
  hi: number;
}

export interface Ranking {
  /** Sampleable tokens in all. */
  readonly size: number;
  /** How many leading ranks this ranking knows (ids, weights, masses); `size` for a full row. */
  readonly known: number;
  id(rank: number): number;
  weight(rank: number): number;
  /** Total weight of ranks [0, count), count ≤ known, summed in rank order. */
  mass(count: number): number;
  /** Total weight of the first `count` ranks, for any count up to `size`: exact where known, else bounds. */
  massRange(count: number): MassRange;
}

export interface Truncation {
  topK: number;
  topP: number;
  minP: number;
}

/** First rank whose running mass reaches `threshold` (≥), among ranks [0, limit); -1 if none. */
function firstRankReaching(ranking: Ranking, threshold: number, limit: number): number {
  for (let rank = 0; rank < limit; rank++) if (ranking.mass(rank + 1) >= threshold) return rank;
  return -1;
}

/** First rank whose running mass exceeds `target` (>), among ranks [0, limit); -1 if none. */
function firstRankAbove(ranking: Ranking, target: number, limit: number): number {
  for (let rank = 0; rank < limit; rank++) if (ranking.mass(rank + 1) > target) return rank;
  return -1;
}

/**
 * Applies top-k, then top-p (on the top-k distribution), then min-p, and draws with `uniform` by inverse CDF in
 * rank order. Returns the chosen rank, or null when the ranking's unknown tail could change the answer.
 */
export function chooseRank(ranking: Ranking, truncation: Truncation, uniform: number): number | null {
  const { size, known } = ranking;
  const { topK, topP, minP } = truncation;
  const topKCount = topK > 0 && topK < size ? topK : size;
  // How many ranks survive, when that is known to lie within the known ranks; Infinity = somewhere past them.
  let keptCount = topKCount <= known ? topKCount : Infinity;

  if (minP > 0) {
    // min-p keeps p ≥ minP · pmax, i.e. weight ≥ minP: a prefix of the ranking, independent of renormalisation.
    const scanned = Math.min(topKCount, known);
    for (let rank = 0; rank < scanned; rank++) {
      if (ranking.weight(rank) < minP) {
        keptCount = rank;
        break;
      }
    }
  }

  if (topP < 1) {
    const norm = ranking.massRange(topKCount);
    const limit = Math.min(keptCount, known);
    const atLo = firstRankReaching(ranking, topP * norm.lo, limit);
    if (atLo >= 0) {
      if (firstRankReaching(ranking, topP * norm.hi, limit) !== atLo) return null;
      keptCount = atLo + 1;
    }
  }

  const norm = ranking.massRange(keptCount);
  const limit = Math.min(keptCount, known);
  const atLo = firstRankAbove(ranking, uniform * norm.lo, limit);
  if (atLo >= 0 && firstRankAbove(ranking, uniform * norm.hi, limit) === atLo) return atLo;
  if (norm.lo === norm.hi && keptCount <= known) {
    // Rounding put the target at the very end of the mass: take the last token that has any weight.
    for (let rank = keptCount - 1; rank > 0; rank--) if (ranking.weight(rank) > 0) return rank;
    return 0;
  }
  return null;
}

/** True when token a ranks before token b: higher logit, ties to the lower id. */
function ranksBefore(a: number, b: number, logits: Float64Array): boolean {
  const la = logits[a];
  const lb = logits[b];
  return la > lb || (la === lb && a < b);
}

function swap(order: Int32Array, i: number, j: number): void {
  const t = order[i];
  order[i] = order[j];
  order[j] = t;
}

/**
 * Quickselect: reorders order[from, to) so that order[from, end) holds its best (end − from) tokens, in no
 * particular order. The ranking is a strict total order, so equal logits cannot degrade the partitioning.
 */
function selectBest(order: Int32Array, from: number, to: number, end: number, logits: Float64Array): void {
  const nth = end - 1;
  let lo = from;
  let hi = to - 1;
  while (lo < hi) {
    // Median of three as the pivot keeps already-ordered rows (common: logits laid out by id) linear.
    const mid = (lo + hi) >>> 1;
    if (ranksBefore(order[mid], order[lo], logits)) swap(order, mid, lo);
    if (ranksBefore(order[hi], order[lo], logits)) swap(order, hi, lo);
    if (ranksBefore(order[mid], order[hi], logits)) swap(order, mid, hi);
    const pivot = order[hi];
    let store = lo;
    for (let i = lo; i < hi; i++) {
      if (ranksBefore(order[i], pivot, logits)) swap(order, i, store++);
    }
    swap(order, store, hi);
    if (store === nth) return;
    if (store < nth) lo = store + 1;
    else hi = store - 1;
  }
}

const FIRST_SORTED_BATCH = 64;

// Shared by every sampler: sample() is synchronous and keeps nothing here between calls.
let scratchOrder = new Int32Array(0);
let scratchMass = new Float64Array(0);

/**
 * The full row ranked lazily: ranks are sorted on demand in growing batches (partial selection, then a sort of
 * the batch), so the common case touches only the head of the row and the whole row is sorted only if needed.
 */
export class RowRanking implements Ranking {
  readonly size: number;
  readonly known: number;
  private readonly order: Int32Array;
  private readonly running: Float64Array;
  private sortedCount = 0;
  private massCount = 0;
  private total: number | undefined;

  constructor(
    private readonly logits: Float64Array,
    size: number,
    private readonly maxLogit: number,
    private readonly temperature: number,
  ) {
    this.size = size;
    this.known = size;
    if (scratchOrder.length < size) {
      scratchOrder = new Int32Array(size);
      scratchMass = new Float64Array(size);
    }
    this.order = scratchOrder;
    this.running = scratchMass;
    for (let i = 0; i < size; i++) this.order[i] = i;
  }

  id(rank: number): number {
    if (rank >= this.sortedCount) this.sortThrough(rank + 1);
    return this.order[rank];
  }

  weight(rank: number): number {
    return tokenWeight(this.logits[this.id(rank)], this.maxLogit, this.temperature);
  }

  mass(count: number): number {
    for (; this.massCount < count; this.massCount++) {
      const before = this.massCount > 0 ? this.running[this.massCount - 1] : 0;
      this.running[this.massCount] = before + this.weight(this.massCount);
    }
    return count > 0 ? this.running[count - 1] : 0;
  }

  massRange(count: number): MassRange {
    // The whole row's mass is summed in id order: one pass, no sort.
    const mass = count < this.size ? this.mass(count) : (this.total ??= this.rowMass());
    return { lo: mass, hi: mass };
  }

  private rowMass(): number {
    let total = 0;
    for (let i = 0; i < this.size; i++) total += tokenWeight(this.logits[i], this.maxLogit, this.temperature);
    return total;
  }

  private sortThrough(count: number): void {
    const end = Math.min(this.size, Math.max(count, 2 * this.sortedCount, FIRST_SORTED_BATCH));
    const { logits } = this;
    if (end < this.size) selectBest(this.order, this.sortedCount, this.size, end, logits);
    this.order.subarray(this.sortedCount, end).sort((a, b) => logits[b] - logits[a] || a - b);
    this.sortedCount = end;
  }
}
