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
  token: AddedToken | undefined;
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
 * Aho-Corasick automaton is a trie walk here; there are few added tokens), then the single_word, lstrip
 * and rstrip rules on each match. Patterns are UTF-16 code units, equivalent to bytes for valid text.
 */
export class AddedTokenMatcher {
  private readonly root: TrieNode = { children: new Map(), token: undefined };
  /** 1 where a code unit starts some pattern, so most positions cost one array read. */
  private readonly startsPattern = new Uint8Array(0x10000);
  readonly isEmpty: boolean;

  /** `patternOf` gives the text to match (the content, normalized for normalized tokens). */
  constructor(tokens: readonly AddedToken[], patternOf: (token: AddedToken) => string) {
    // The first token of a given pattern wins, special tokens first, as in Hugging Face.
    const ordered = [...tokens.filter((t) => t.special), ...tokens.filter((t) => !t.special)];
    for (const token of ordered) {
      const pattern = patternOf(token);
      if (pattern.length === 0) continue;
      let node = this.root;
      for (let i = 0; i < pattern.length; i++) {
        const unit = pattern.charCodeAt(i);
        let child = node.children.get(unit);
        if (child === undefined) {
          child = { children: new Map(), token: undefined };
          node.children.set(unit, child);
        }
        node = child;
      }
      node.token ??= token;
      this.startsPattern[pattern.charCodeAt(0)] = 1;
    }
    this.isEmpty = this.root.children.size === 0;
  }

  /**
   * Splits `text` into added tokens and the text between them (pieces cover all of text, in order).
   * With `allowSpecial` false, special tokens are not recognized and stay plain text (Hugging Face's
   * encode_special_tokens): their match is skipped as a whole, like a rejected single_word match.
   */
  split(text: string, allowSpecial: boolean): Split[] {
    const splits: Split[] = [];
    let textStart = 0;
    let searchFrom = 0;
    while (searchFrom < text.length) {
      let matchStart = searchFrom;
      let token: AddedToken | undefined;
      let matchEnd = 0;
      for (; matchStart < text.length; matchStart++) {
        if (this.startsPattern[text.charCodeAt(matchStart)] === 0) continue;
        let node: TrieNode | undefined = this.root;
        for (let i = matchStart; i < text.length; i++) {
          node = node.children.get(text.charCodeAt(i));
          if (node === undefined) break;
          if (node.token !== undefined) {
            token = node.token;
            matchEnd = i + 1;
          }
        }
        if (token !== undefined) break;
      }
      if (token === undefined) break;
      searchFrom = matchEnd;

      if (token.special && !allowSpecial) continue;
      if (token.singleWord && !this.isSingleWord(text, matchStart, matchEnd)) continue;
      let start = matchStart;
      let end = matchEnd;
      if (token.lstrip) {
        while (start > textStart && classOf(text.charCodeAt(start - 1)) === SPACE) start--;
      }
      if (token.rstrip) {
        while (end < text.length && classOf(text.charCodeAt(end)) === SPACE) end++;
        // Hugging Face resumes inside the stripped spaces and could emit overlapping pieces when another
        // added token starts there; resuming after them keeps the pieces a partition of the text.
        searchFrom = end;
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
