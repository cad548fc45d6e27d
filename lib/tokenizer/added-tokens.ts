import { classOf, SPACE } from './unicode';

/** An entry of tokenizer.json's `added_tokens`, after defaults. */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  /** Matched against the normalized text (true) or the raw input (false). */
  normalized: boolean;
}

interface TrieNode {
  children: Map<number, TrieNode>;
  /** Set where a pattern ends. */
  ends: boolean;
}

/**
 * A regular expression that matches the trie's patterns leftmost-longest: each node is an alternation
 * of its children, optional (and greedy, so longer is tried first) where a pattern may end there.
 * V8 compiles it to native code, which scans text far faster than a trie walk in JavaScript.
 */
function trieSource(node: TrieNode): string {
  const branches = [...node.children].map(([unit, child]) => `\\u${unit.toString(16).padStart(4, '0')}${trieSource(child)}`);
  if (branches.length === 0) return '';
  const alternation = branches.length === 1 ? branches[0] : `(?:${branches.join('|')})`;
  return node.ends ? `(?:${alternation})?` : alternation;
}

/** Rust's Unicode `\w`, which Hugging Face uses for single_word (its `\s` is White_Space, as classOf). */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;

/** One piece of a split: added-token id, or -1 for text[start, end) left to the model. */
export interface Split {
  id: number;
  start: number;
  end: number;
}

/**
 * Finds added tokens in text the way Hugging Face's AddedVocabulary does: a leftmost-longest scan (its
 * Aho-Corasick automaton is a regular expression here), then the single_word, lstrip and rstrip rules on
 * each match. Patterns are UTF-16 code units, equivalent to bytes for valid text.
 */
export class AddedTokenMatcher {
  /** Matches any pattern, leftmost-longest; undefined when there are none. */
  private readonly pattern: RegExp | undefined;
  /** Pattern text → its token. */
  private readonly tokens = new Map<string, AddedToken>();

  /** `patternOf` gives the text to match (the content, normalized for normalized tokens). */
  constructor(tokens: readonly AddedToken[], patternOf: (token: AddedToken) => string) {
    const root: TrieNode = { children: new Map(), ends: false };
    // The first token of a given pattern wins, special tokens first, as in Hugging Face.
    const ordered = [...tokens.filter((t) => t.special), ...tokens.filter((t) => !t.special)];
    for (const token of ordered) {
      const pattern = patternOf(token);
      if (pattern.length === 0 || this.tokens.has(pattern)) continue;
      this.tokens.set(pattern, token);
      let node = root;
      for (let i = 0; i < pattern.length; i++) {
        const unit = pattern.charCodeAt(i);
        let child = node.children.get(unit);
        if (child === undefined) {
          child = { children: new Map(), ends: false };
          node.children.set(unit, child);
        }
        node = child;
      }
      node.ends = true;
    }
    this.pattern = this.tokens.size === 0 ? undefined : new RegExp(trieSource(root), 'g');
  }

  get isEmpty(): boolean {
    return this.pattern === undefined;
  }

  /**
   * Splits `text` into added tokens and the text between them (pieces cover all of text, in order).
   * With `allowSpecial` false, special tokens are not recognized and stay plain text (Hugging Face's
   * encode_special_tokens): their match is skipped as a whole, like a rejected single_word match.
   */
  split(text: string, allowSpecial: boolean): Split[] {
    const splits: Split[] = [];
    const pattern = this.pattern;
    if (pattern === undefined) return [{ id: -1, start: 0, end: text.length }];
    let textStart = 0;
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      const token = this.tokens.get(match[0])!;
      let start = match.index;
      let end = start + match[0].length;
      if (token.special && !allowSpecial) continue;
      if (token.singleWord && !this.isSingleWord(text, start, end)) continue;
      if (token.lstrip) {
        while (start > textStart && classOf(text.charCodeAt(start - 1)) === SPACE) start--;
      }
      if (token.rstrip) {
        while (end < text.length && classOf(text.charCodeAt(end)) === SPACE) end++;
        // Hugging Face resumes inside the stripped spaces and could emit overlapping pieces when another
        // added token starts there; resuming after them keeps the pieces a partition of the text.
        pattern.lastIndex = end;
      }
      if (textStart < start) splits.push({ id: -1, start: textStart, end: start });
      splits.push({ id: token.id, start, end });
      textStart = end;
    }
    if (textStart < text.length) splits.push({ id: -1, start: textStart, end: text.length });
    return splits;
  }

  private isSingleWord(text: string, start: number, end: number): boolean {
    if (start > 0) {
      const before = text.codePointAt(start - 1 >= 1 && isLowSurrogate(text.charCodeAt(start - 1)) ? start - 2 : start - 1)!;
      if (WORD_CHAR.test(String.fromCodePoint(before))) return false;
    }
    if (end < text.length && WORD_CHAR.test(String.fromCodePoint(text.codePointAt(end)!))) return false;
    return true;
  }
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
