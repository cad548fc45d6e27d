import { FlashMptError } from '../errors';
import { BYTE_TO_CHAR, bytesToTokenString, encodeUtf8 } from './byte-level';

export interface BpeModelOptions {
  vocab: Record<string, unknown>;
  merges: unknown[];
  unkToken: string | null;
  fuseUnk: boolean;
  /** Llama-3 style: a word that is itself a vocabulary entry skips the merges. */
  ignoreMerges: boolean;
}

/** Ids above this would make the id → token table absurdly large; no real vocabulary comes close. */
export const MAX_TOKEN_ID = 1 << 24;
/** Words longer than this (in UTF-16 units) are not cached, as in Hugging Face's BPE. */
const MAX_CACHED_WORD = 256;
/** Words of at most this many byte symbols are merged by the simple quadratic scan. */
const SHORT_WORD = 48;
/** Word cache slots (a power of two); it is emptied when half full, bounding memory on any input. */
const CACHE_SLOTS = 1 << 17;
/** The cache starts this small and doubles up to CACHE_SLOTS: a full-size one costs ~3 ms and 2 MB per load. */
const INITIAL_CACHE_SLOTS = 1 << 10;

function fieldError(field: string, message: string): FlashMptError {
  return new FlashMptError('E_TOKENIZER', `tokenizer.json: ${field}: ${message}`, { details: { field } });
}

function badMerge(merge: unknown, rank: number): FlashMptError {
  return fieldError(`model.merges[${rank}]`, `expected "left right" or ["left", "right"], got ${JSON.stringify(merge)}`);
}

/**
 * Merge ranks keyed by (left id, right id) in an open-addressing table of typed arrays: no per-entry
 * objects, and lookups hash two small ints instead of a string or a boxed 33-bit key.
 */
class MergeTable {
  private readonly mask: number;
  private readonly lefts: Int32Array;
  private readonly rights: Int32Array;
  private readonly ranks: Int32Array;
  /** Merged token id of each rank. */
  readonly mergedIds: Int32Array;

  constructor(mergeCount: number) {
    let capacity = 16;
    while (capacity < mergeCount * 2) capacity *= 2;
    this.mask = capacity - 1;
    this.lefts = new Int32Array(capacity).fill(-1);
    this.rights = new Int32Array(capacity);
    this.ranks = new Int32Array(capacity);
    this.mergedIds = new Int32Array(mergeCount);
  }

  private slotOf(left: number, right: number): number {
    let hash = Math.imul(left, 0x9e3779b1) + right;
    hash = Math.imul(hash ^ (hash >>> 15), 0x85ebca6b);
    return (hash ^ (hash >>> 13)) & this.mask;
  }

  /** A later duplicate of a pair replaces the earlier one, as Hugging Face's merge map does. */
  set(left: number, right: number, rank: number, mergedId: number): void {
    let slot = this.slotOf(left, right);
    while (this.lefts[slot] !== -1 && (this.lefts[slot] !== left || this.rights[slot] !== right)) {
      slot = (slot + 1) & this.mask;
    }
    this.lefts[slot] = left;
    this.rights[slot] = right;
    this.ranks[slot] = rank;
    this.mergedIds[rank] = mergedId;
  }

  /** Rank of merging left+right, or -1 when the pair never merges. */
  rank(left: number, right: number): number {
    let slot = this.slotOf(left, right);
    for (;;) {
      const stored = this.lefts[slot];
      if (stored === -1) return -1;
      if (stored === left && this.rights[slot] === right) return this.ranks[slot];
      slot = (slot + 1) & this.mask;
    }
  }
}

/** Id of a vocabulary entry; inherited properties such as "constructor" are not numbers. */
function vocabId(vocab: Record<string, unknown>, token: string): number | undefined {
  const id = vocab[token];
  return typeof id === 'number' ? id : undefined;
}

/**
 * The merge table of `merges` ("left right" strings or ["left", "right"] pairs, rank = index); every
 * token named, and each concatenation, must be in the vocabulary. Loading time is mostly spent here,
 * in one flat loop that the JIT can optimize while it runs.
 */
function buildMergeTable(vocab: Record<string, unknown>, merges: unknown[]): MergeTable {
  const table = new MergeTable(merges.length);
  for (let rank = 0; rank < merges.length; rank++) {
    const merge = merges[rank];
    let left: string;
    let right: string;
    if (typeof merge === 'string') {
      const space = merge.indexOf(' ');
      if (space <= 0 || space === merge.length - 1 || merge.indexOf(' ', space + 1) !== -1) throw badMerge(merge, rank);
      left = merge.slice(0, space);
      right = merge.slice(space + 1);
    } else if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string') {
      left = merge[0];
      right = merge[1];
    } else {
      throw badMerge(merge, rank);
    }
    const leftId = vocab[left];
    const rightId = vocab[right];
    const mergedId = vocab[left + right];
    if (typeof leftId !== 'number' || typeof rightId !== 'number' || typeof mergedId !== 'number') {
      const missing = typeof leftId !== 'number' ? left : typeof rightId !== 'number' ? right : left + right;
      throw fieldError(`model.merges[${rank}]`, `token ${JSON.stringify(missing)} is not in model.vocab`);
    }
    table.set(leftId, rightId, rank, mergedId);
  }
  return table;
}

/** FNV-1a over UTF-16 units of text[start, end). */
function hashRange(text: string, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash;
}

const NO_IDS: number[] = [];

/**
 * Word → ids, looked up by a range of the text being encoded: a hit costs one pass of hashing and one
 * of comparing, with no substring allocated (a Map would need the word sliced out and hashed natively).
 */
class WordCache {
  private mask = INITIAL_CACHE_SLOTS - 1;
  private hashes = new Int32Array(INITIAL_CACHE_SLOTS);
  private words: (string | undefined)[] = new Array<string | undefined>(INITIAL_CACHE_SLOTS).fill(undefined);
  private ids: number[][] = new Array<number[]>(INITIAL_CACHE_SLOTS).fill(NO_IDS);
  private size = 0;

  /** Appends the ids of text[start, end) (whose hash is `hash`) to `out`; false when not cached. */
  appendCached(text: string, start: number, end: number, hash: number, out: number[]): boolean {
    const length = end - start;
    for (let slot = hash & this.mask; ; slot = (slot + 1) & this.mask) {
      const word = this.words[slot];
      if (word === undefined) return false;
      if (this.hashes[slot] !== hash || word.length !== length) continue;
      let i = 0;
      while (i < length && word.charCodeAt(i) === text.charCodeAt(start + i)) i++;
      if (i < length) continue;
      const ids = this.ids[slot];
      for (let k = 0; k < ids.length; k++) out.push(ids[k]);
      return true;
    }
  }

  insert(word: string, hash: number, ids: number[]): void {
    if (this.size * 2 >= this.words.length) {
      if (this.words.length < CACHE_SLOTS) {
        this.grow();
      } else {
        this.words.fill(undefined);
        this.ids.fill(NO_IDS);
        this.size = 0;
      }
    }
    this.place(word, hash, ids);
    this.size++;
  }

  private place(word: string, hash: number, ids: number[]): void {
    let slot = hash & this.mask;
    while (this.words[slot] !== undefined) slot = (slot + 1) & this.mask;
    this.words[slot] = word;
    this.hashes[slot] = hash;
    this.ids[slot] = ids;
  }

  private grow(): void {
    const { words, hashes, ids } = this;
    const slots = words.length * 2;
    this.mask = slots - 1;
    this.hashes = new Int32Array(slots);
    this.words = new Array<string | undefined>(slots).fill(undefined);
    this.ids = new Array<number[]>(slots).fill(NO_IDS);
    for (let slot = 0; slot < words.length; slot++) {
      const word = words[slot];
      if (word !== undefined) this.place(word, hashes[slot], ids[slot]);
    }
  }
}

/** Byte-level BPE over token ids: UTF-8 bytes → byte tokens → merges applied lowest rank first. */
export class BpeModel {
  private readonly vocab: Record<string, unknown>;
  /** Vocabulary id → token (holes where the vocabulary skips ids). */
  readonly tokens: string[];
  private readonly merges: MergeTable;
  /** Token id of each byte's stand-in character, -1 when the vocabulary lacks it. */
  private readonly byteIds = new Int32Array(256);
  private readonly unkId: number;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly cache = new WordCache();

  // Scratch buffers reused across words; grown on demand.
  private bytes = new Uint8Array(768);
  private symbols = new Int32Array(256);
  private next = new Int32Array(256);
  private prev = new Int32Array(256);
  /** Short words: pairRanks[i] is the rank of (symbols[i], symbols[i + 1]), or -1. */
  private pairRanks = new Int32Array(256);
  private heapRanks = new Int32Array(768);
  private heapPositions = new Int32Array(768);

  constructor(options: BpeModelOptions) {
    // The parsed JSON object serves as the token → id dictionary: copying 50k entries into a Map would
    // cost more than the rest of loading. Its values are checked here, once.
    this.vocab = options.vocab;
    this.tokens = [];
    let maxId = -1;
    for (const token in this.vocab) {
      const id = this.vocab[token];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_TOKEN_ID) {
        throw fieldError(`model.vocab[${JSON.stringify(token)}]`, `expected a token id (integer 0..${MAX_TOKEN_ID - 1}), got ${JSON.stringify(id)}`);
      }
      if (id > maxId) {
        // Grow in one step: writing far past the end would turn the array into a slow dictionary.
        this.tokens.length = id + 1;
        maxId = id;
      }
      this.tokens[id] = token;
    }

    this.merges = buildMergeTable(this.vocab, options.merges);

    for (let byte = 0; byte < 256; byte++) {
      this.byteIds[byte] = this.tokenToId(String.fromCharCode(BYTE_TO_CHAR[byte])) ?? -1;
    }
    const unkId = options.unkToken === null ? -1 : (this.tokenToId(options.unkToken) ?? -2);
    if (unkId === -2) throw fieldError('model.unk_token', `${JSON.stringify(options.unkToken)} is not in model.vocab`);
    this.unkId = unkId;
    this.fuseUnk = options.fuseUnk;
    this.ignoreMerges = options.ignoreMerges;
  }

  /** Id of a vocabulary entry. */
  tokenToId(token: string): number | undefined {
    return vocabId(this.vocab, token);
  }

  /** Appends the ids of the pre-token text[start, end) to `out`. */
  encodeWord(text: string, start: number, end: number, out: number[]): void {
    const cacheable = end - start <= MAX_CACHED_WORD;
    const hash = cacheable ? hashRange(text, start, end) : 0;
    if (cacheable && this.cache.appendCached(text, start, end, hash, out)) return;
    const ids = this.tokenize(text, start, end);
    if (cacheable) this.cache.insert(text.slice(start, end), hash, ids);
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  private tokenize(text: string, start: number, end: number): number[] {
    const maxBytes = (end - start) * 3;
    if (this.bytes.length < maxBytes) this.bytes = new Uint8Array(maxBytes);
    const byteCount = encodeUtf8(text, start, end, this.bytes);
    if (this.ignoreMerges) {
      const whole = this.tokenToId(bytesToTokenString(this.bytes, byteCount));
      if (whole !== undefined) return [whole];
    }
    const count = this.initialSymbols(byteCount);
    return count <= SHORT_WORD ? this.mergeShortWord(count) : this.mergeLongWord(count);
  }

  /** Fills `symbols` with the byte tokens of `bytes` (unknown bytes → unk, fused if asked); returns the count. */
  private initialSymbols(byteCount: number): number {
    if (this.symbols.length < byteCount) {
      const capacity = byteCount * 2;
      this.symbols = new Int32Array(capacity);
      this.next = new Int32Array(capacity);
      this.prev = new Int32Array(capacity);
      this.pairRanks = new Int32Array(capacity);
      this.heapRanks = new Int32Array(capacity * 3);
      this.heapPositions = new Int32Array(capacity * 3);
    }
    const symbols = this.symbols;
    let count = 0;
    let previousWasUnk = false;
    for (let i = 0; i < byteCount; i++) {
      const id = this.byteIds[this.bytes[i]];
      if (id >= 0) {
        symbols[count++] = id;
        previousWasUnk = false;
      } else if (this.unkId >= 0) {
        // Without an unk token Hugging Face drops the byte; with one, fuse_unk folds a run into one.
        if (!(this.fuseUnk && previousWasUnk)) symbols[count++] = this.unkId;
        previousWasUnk = true;
      }
    }
    return count;
  }

  /**
   * Applies merges to symbols[0, count): always the lowest-ranked adjacent pair, leftmost on ties, as
   * Hugging Face does. For a short word, scanning the pair ranks for the minimum beats any bookkeeping.
   */
  private mergeShortWord(count: number): number[] {
    const { symbols, merges } = this;
    const ranks = this.pairRanks;
    for (let i = 0; i + 1 < count; i++) ranks[i] = merges.rank(symbols[i], symbols[i + 1]);
    for (;;) {
      let best = -1;
      let bestRank = 0x7fffffff;
      for (let i = 0; i + 1 < count; i++) {
        const rank = ranks[i];
        if (rank >= 0 && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      symbols[best] = merges.mergedIds[bestRank];
      count--;
      for (let i = best + 1; i < count; i++) {
        symbols[i] = symbols[i + 1];
        ranks[i] = ranks[i + 1];
      }
      if (best > 0) ranks[best - 1] = merges.rank(symbols[best - 1], symbols[best]);
      if (best + 1 < count) ranks[best] = merges.rank(symbols[best], symbols[best + 1]);
    }
    const ids = new Array<number>(count);
    for (let i = 0; i < count; i++) ids[i] = symbols[i];
    return ids;
  }

  /**
   * The same merges for a long word: a binary heap of (rank, position) over a doubly linked list keeps
   * it O(n log n), so a megabyte-long word stays fast; stale heap entries are skipped when popped.
   */
  private mergeLongWord(count: number): number[] {
    const { symbols, next, prev, heapRanks, heapPositions, merges } = this;
    let heapSize = 0;
    const push = (rank: number, position: number): void => {
      let child = heapSize++;
      while (child > 0) {
        const parent = (child - 1) >> 1;
        const parentRank = heapRanks[parent];
        if (parentRank < rank || (parentRank === rank && heapPositions[parent] < position)) break;
        heapRanks[child] = parentRank;
        heapPositions[child] = heapPositions[parent];
        child = parent;
      }
      heapRanks[child] = rank;
      heapPositions[child] = position;
    };

    for (let i = 0; i < count; i++) {
      next[i] = i + 1 < count ? i + 1 : -1;
      prev[i] = i - 1;
    }
    for (let i = 0; i + 1 < count; i++) {
      const rank = merges.rank(symbols[i], symbols[i + 1]);
      if (rank >= 0) push(rank, i);
    }

    while (heapSize > 0) {
      const rank = heapRanks[0];
      const position = heapPositions[0];
      // Pop: move the last entry to the root and sift it down.
      heapSize--;
      const lastRank = heapRanks[heapSize];
      const lastPosition = heapPositions[heapSize];
      let parent = 0;
      for (;;) {
        let child = parent * 2 + 1;
        if (child >= heapSize) break;
        if (
          child + 1 < heapSize &&
          (heapRanks[child + 1] < heapRanks[child] ||
            (heapRanks[child + 1] === heapRanks[child] && heapPositions[child + 1] < heapPositions[child]))
        ) {
          child++;
        }
        if (lastRank < heapRanks[child] || (lastRank === heapRanks[child] && lastPosition < heapPositions[child])) break;
        heapRanks[parent] = heapRanks[child];
        heapPositions[parent] = heapPositions[child];
        parent = child;
      }
      heapRanks[parent] = lastRank;
      heapPositions[parent] = lastPosition;

      // A stale entry: the symbol was merged away or its right neighbour changed since it was pushed.
      const right = next[position];
      if (symbols[position] < 0 || right < 0 || merges.rank(symbols[position], symbols[right]) !== rank) continue;

      symbols[position] = merges.mergedIds[rank];
      symbols[right] = -1;
      const afterRight = next[right];
      next[position] = afterRight;
      if (afterRight >= 0) prev[afterRight] = position;

      const before = prev[position];
      if (before >= 0) {
        const leftRank = merges.rank(symbols[before], symbols[position]);
        if (leftRank >= 0) push(leftRank, before);
      }
      if (afterRight >= 0) {
        const rightRank = merges.rank(symbols[position], symbols[afterRight]);
        if (rightRank >= 0) push(rightRank, position);
      }
    }

    const ids: number[] = [];
    for (let i = 0; i >= 0 && i < count; i = next[i]) ids.push(symbols[i]);
    return ids;
  }
}
