/**
 * Tokens ranked by processed logit (descending, ties to the lower id) with their sampling weights. The full-row
 * path and the candidate path expose the same `Ranking` and run the same `chooseToken`, so wherever both know
 * the ranks they compute bit-identical numbers and pick identical tokens.
 *
 * The draw walks the kept tokens in a fixed order: the first HEAD_RANKS ranks in rank order, then the other kept
 * tokens in id order. Any fixed order samples the same distribution; this one lets the full row skip sorting
 * its long tail, while the candidate path, which knows at most the head, can still match it exactly.
 */

/** Ranks walked in rank order; candidate sets up to this size are used in full. */
export const HEAD_RANKS = 1024;
/** Ranks the full row sorts first; most real distributions are decided within them. */
const FIRST_HEAD = 64;

// Hot loops read these module constants, not globals: global lookups are slow inside vm contexts (jest).
const exp = Math.exp;

/** Weight of a token relative to the best one: exp((logit − max) / T). The one formula both paths use. */
export function tokenWeight(logit: number, maxLogit: number, temperature: number): number {
  return exp((logit - maxLogit) / temperature);
}

/** A mass one path knows exactly (lo === hi) and the other only within bounds. */
export interface MassRange {
  lo: number;
  hi: number;
}

export interface Ranking {
  /** Sampleable tokens in all. */
  readonly size: number;
  /** Leading ranks whose ids, weights and running masses are known (≤ HEAD_RANKS). */
  readonly known: number;
  id(rank: number): number;
  weight(rank: number): number;
  /** Total weight of ranks [0, count), count ≤ known, summed in rank order. */
  mass(count: number): number;
  /** Total weight of the `count` best tokens, where count > known or count = size. */
  massOfTop(count: number): MassRange;
  /** How many tokens weigh at least `minWeight` (they lead the ranking); null if unknown. */
  countWeighingAtLeast(minWeight: number): number | null;
  /** Smallest count > known whose running mass (in rank order) reaches `threshold`, at most `limit`; null if unknown. */
  countReaching(threshold: number, limit: number): number | null;
  /** Continues the draw past the known ranks over the other tokens among the `keptCount` best; null if unknown. */
  drawPastKnown(target: number, keptCount: number): number | null;
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

function massOfFirst(ranking: Ranking, count: number): MassRange {
  if (count <= ranking.known && count < ranking.size) {
    const mass = ranking.mass(count);
    return { lo: mass, hi: mass };
  }
  return ranking.massOfTop(count);
}

/**
 * Applies top-k, then top-p (on the top-k distribution), then min-p, and draws with `uniform` by inverse CDF.
 * Returns the token, or null when what the ranking does not know could change the answer.
 */
export function chooseToken(ranking: Ranking, truncation: Truncation, uniform: number): number | null {
  const { size, known } = ranking;
  const { topK, topP, minP } = truncation;
  const topKCount = topK > 0 && topK < size ? topK : size;
  // Tokens kept so far. Past `known` it is exact for the full row; for candidates it only means "past known".
  let keptCount = topKCount;

  if (minP > 0) {
    // min-p keeps p ≥ minP · pmax, i.e. weight ≥ minP: a prefix of the ranking, whatever the normalisation.
    let failing = -1;
    const scanned = Math.min(keptCount, known);
    for (let rank = 0; rank < scanned && failing < 0; rank++) if (ranking.weight(rank) < minP) failing = rank;
    if (failing >= 0) keptCount = failing;
    else if (keptCount > known) keptCount = Math.min(keptCount, ranking.countWeighingAtLeast(minP) ?? keptCount);
  }

  if (topP < 1) {
    const norm = massOfFirst(ranking, topKCount);
    const limit = Math.min(keptCount, known);
    const atLo = firstRankReaching(ranking, topP * norm.lo, limit);
    if (atLo >= 0) {
      if (firstRankReaching(ranking, topP * norm.hi, limit) !== atLo) return null;
      keptCount = atLo + 1;
    } else if (keptCount > known) {
      keptCount = ranking.countReaching(topP * norm.lo, keptCount) ?? keptCount;
    }
  }

  const norm = massOfFirst(ranking, keptCount);
  const limit = Math.min(keptCount, known);
  const atLo = firstRankAbove(ranking, uniform * norm.lo, limit);
  if (atLo >= 0) return firstRankAbove(ranking, uniform * norm.hi, limit) === atLo ? ranking.id(atLo) : null;
  if (norm.lo !== norm.hi) return null;
  if (keptCount > known) return ranking.drawPastKnown(uniform * norm.lo, keptCount);
  // Rounding put the target at the very end of the mass: take the last token that has any weight.
  for (let rank = keptCount - 1; rank > 0; rank--) if (ranking.weight(rank) > 0) return ranking.id(rank);
  return ranking.id(0);
}

/** True when token a ranks before token b: higher logit, ties to the lower id. */
function ranksBefore(a: number, b: number, logits: Float64Array): boolean {
  const la = logits[a];
  const lb = logits[b];
  return la > lb || (la === lb && a < b);
}

/** The m-th largest of work[0, size) (m ≥ 1), by quickselect; reorders `work`. */
function mthLargest(work: Float64Array, size: number, m: number): number {
  const target = m - 1;
  let lo = 0;
  let hi = size - 1;
  while (lo < hi) {
    const a = work[lo];
    const b = work[(lo + hi) >>> 1];
    const c = work[hi];
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    // Hoare partition, descending; equal values split across both sides, so ties cannot degrade it.
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (work[i] > pivot) i++;
      while (work[j] < pivot) j--;
      if (i <= j) {
        const t = work[i];
        work[i++] = work[j];
        work[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return pivot;
  }
  return work[lo];
}

/**
 * Smallest n such that the n largest of work[0, length) sum to at least `need` (length if they never do), by
 * quickselect on mass; reorders `work`.
 */
function heaviestCountReaching(work: Float64Array, length: number, need: number): number {
  let lo = 0;
  let hi = length;
  let taken = 0; // the mass of work[0, lo), all heavier than anything in [lo, hi); always < need
  while (lo < hi) {
    const a = work[lo];
    const b = work[(lo + hi - 1) >>> 1];
    const c = work[hi - 1];
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    // Three-way partition: [lo, heavy) > pivot, [heavy, i) = pivot, [light, hi) < pivot.
    let heavy = lo;
    let light = hi;
    let heavyMass = 0;
    for (let i = lo; i < light; ) {
      const v = work[i];
      if (v > pivot) {
        work[i++] = work[heavy];
        work[heavy++] = v;
        heavyMass += v;
      } else if (v < pivot) {
        work[i] = work[--light];
        work[light] = v;
      } else {
        i++;
      }
    }
    if (taken + heavyMass >= need) {
      hi = heavy;
      continue;
    }
    taken += heavyMass;
    for (let i = heavy; i < light; i++) {
      taken += pivot;
      if (taken >= need) return i + 1;
    }
    lo = light;
  }
  return length;
}

/** Adds token `at` (= the heap's current size) to a heap whose root is its worst-ranked token. */
function siftUp(heap: Int32Array, at: number, logits: Float64Array): void {
  const id = at;
  let child = at;
  while (child > 0) {
    const parent = (child - 1) >> 1;
    if (!ranksBefore(heap[parent], id, logits)) break;
    heap[child] = heap[parent];
    child = parent;
  }
  heap[child] = id;
}

/** Restores the heap after its root was replaced. */
function siftDown(heap: Int32Array, size: number, logits: Float64Array): void {
  const id = heap[0];
  let parent = 0;
  for (;;) {
    let child = 2 * parent + 1;
    if (child >= size) break;
    if (child + 1 < size && ranksBefore(heap[child], heap[child + 1], logits)) child++;
    if (!ranksBefore(id, heap[child], logits)) break;
    heap[parent] = heap[child];
    parent = child;
  }
  heap[parent] = id;
}

// Shared by every sampler: sampling is synchronous and keeps nothing here between calls.
const scratchHead = new Int32Array(HEAD_RANKS);
const scratchRunning = new Float64Array(HEAD_RANKS);
let scratchValues = new Float64Array(0);
let scratchWeights = new Float64Array(0);

/**
 * The full row as a ranking. The head is found by partial selection (one pass through a bounded heap, then a
 * sort of the head only): first FIRST_HEAD ranks, then HEAD_RANKS if the walk goes on. The rest of the row is
 * never sorted: passes in id order and quickselect by value or by mass answer what is needed there.
 */
export class RowRanking implements Ranking {
  readonly size: number;
  readonly known: number;
  private headCount = 0;
  private massCount = 0;
  private weightsReady = false;
  private lastLookup = { rank: -1, id: -1 };

  constructor(
    private readonly logits: Float64Array,
    size: number,
    private readonly maxLogit: number,
    private readonly temperature: number,
  ) {
    this.size = size;
    this.known = Math.min(size, HEAD_RANKS);
    if (scratchValues.length < size) {
      scratchValues = new Float64Array(size);
      scratchWeights = new Float64Array(size);
    }
  }

  id(rank: number): number {
    if (rank >= this.headCount) this.selectHead(rank < FIRST_HEAD ? Math.min(FIRST_HEAD, this.known) : this.known);
    return scratchHead[rank];
  }

  weight(rank: number): number {
    return tokenWeight(this.logits[this.id(rank)], this.maxLogit, this.temperature);
  }

  mass(count: number): number {
    for (; this.massCount < count; this.massCount++) {
      const before = this.massCount > 0 ? scratchRunning[this.massCount - 1] : 0;
      scratchRunning[this.massCount] = before + this.weight(this.massCount);
    }
    return count > 0 ? scratchRunning[count - 1] : 0;
  }

  massOfTop(count: number): MassRange {
    const { logits, size } = this;
    const weights = this.weights();
    const last = count < size ? this.tokenAtRank(count - 1) : -1;
    let mass = 0;
    for (let id = 0; id < size; id++) if (last < 0 || !ranksBefore(last, id, logits)) mass += weights[id];
    return { lo: mass, hi: mass };
  }

  countWeighingAtLeast(minWeight: number): number {
    const weights = this.weights();
    let count = 0;
    for (let id = 0; id < this.size; id++) if (weights[id] >= minWeight) count++;
    return count;
  }

  countReaching(threshold: number, limit: number): number {
    const { logits, size } = this;
    const weights = this.weights();
    const headLast = this.id(this.known - 1);
    let rest = 0;
    for (let id = 0; id < size; id++) if (ranksBefore(headLast, id, logits)) scratchValues[rest++] = weights[id];
    const count = this.known + heaviestCountReaching(scratchValues, rest, threshold - this.mass(this.known));
    return Math.min(count, limit);
  }

  drawPastKnown(target: number, keptCount: number): number {
    const { logits, size } = this;
    const weights = this.weights();
    const headLast = this.id(this.known - 1);
    const keptLast = keptCount < size ? this.tokenAtRank(keptCount - 1) : -1;
    let running = this.mass(this.known);
    let lastWeighted = -1;
    for (let id = 0; id < size; id++) {
      if (!ranksBefore(headLast, id, logits) || (keptLast >= 0 && ranksBefore(keptLast, id, logits))) continue;
      running += weights[id];
      if (running > target) return id;
      if (weights[id] > 0) lastWeighted = id;
    }
    // Rounding put the target at the very end of the mass: take the last token that has any weight.
    if (lastWeighted >= 0) return lastWeighted;
    for (let rank = this.known - 1; rank > 0; rank--) if (this.weight(rank) > 0) return this.id(rank);
    return this.id(0);
  }

  /** Every token's weight, computed once per row and only when a pass over the whole row needs them. */
  private weights(): Float64Array {
    if (!this.weightsReady) {
      for (let id = 0; id < this.size; id++) scratchWeights[id] = tokenWeight(this.logits[id], this.maxLogit, this.temperature);
      this.weightsReady = true;
    }
    return scratchWeights;
  }

  /**
   * Puts the `count` best tokens, sorted, into the head: one pass keeping them in a heap whose root is the worst
   * kept so far (most tokens cost one comparison against it), then a sort of the few.
   */
  private selectHead(count: number): void {
    const { logits, size } = this;
    const heap = scratchHead;
    for (let id = 0; id < count; id++) siftUp(heap, id, logits);
    for (let id = count; id < size; id++) {
      if (ranksBefore(id, heap[0], logits)) {
        heap[0] = id;
        siftDown(heap, count, logits);
      }
    }
    heap.subarray(0, count).sort((a, b) => logits[b] - logits[a] || a - b);
    this.headCount = count;
  }

  /**
   * The token at any rank without sorting: its logit by quickselect, then the tie among equal logits by id.
   * Remembers the last answer: the normalisation and the draw ask for the same rank.
   */
  private tokenAtRank(rank: number): number {
    if (this.lastLookup.rank === rank) return this.lastLookup.id;
    const { logits, size } = this;
    scratchValues.set(logits.subarray(0, size));
    const value = mthLargest(scratchValues, size, rank + 1);
    let tiesBefore = rank;
    for (let id = 0; id < size; id++) if (logits[id] > value) tiesBefore--;
    for (let id = 0; id < size; id++) {
      if (logits[id] === value && tiesBefore-- === 0) {
        this.lastLookup = { rank, id };
        return id;
      }
    }
    throw new Error(`rank ${rank} is outside the ranking`); // unreachable: quickselect returns a value of the row
  }
}
