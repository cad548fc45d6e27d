/**
 * A hand-written scanner equivalent to the GPT-2 pre-tokenizer regex (as run by Oniguruma in Hugging Face
 * `tokenizers`):
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * Alternatives are tried in order at each position (the first that matches wins, not the longest), so a
 * pre-token is: a lowercase contraction; or an optional U+0020 followed by a run of one class (letters,
 * numbers, or "other"); or a whitespace run. `\s+(?!\S)` backtracks one character when the run is followed
 * by a non-space, leaving that last space to prefix the next word; a single space before a word therefore
 * falls through to `\s+` only when it is not U+0020 (a tab or newline stays alone).
 */

import { classOf, SPACE } from './unicode';

/** Class of the ASCII characters, read without a call in the hot loops. */
const ASCII_CLASSES = Uint8Array.from({ length: 0x80 }, (_, code) => classOf(code));

const SPACE_CHAR = 0x20;
const APOSTROPHE = 0x27;

/** Code units taken by the contraction at `start` ('s 't 're 've 'm 'll 'd), or 0. */
function contractionLength(text: string, start: number, end: number): number {
  if (start + 1 >= end) return 0;
  const first = text.charCodeAt(start + 1);
  if (first === 0x73 || first === 0x74 || first === 0x6d || first === 0x64) return 2; // s t m d
  if (start + 2 >= end) return 0;
  const second = text.charCodeAt(start + 2);
  if ((first === 0x72 || first === 0x76) && second === 0x65) return 3; // re ve
  if (first === 0x6c && second === 0x6c) return 3; // ll
  return 0;
}

/** Class and width (1 or 2 code units) of the character at `index`, packed as class * 4 + width. */
function classAndWidthAt(text: string, index: number, end: number): number {
  const unit = text.charCodeAt(index);
  if (unit < 0x80) return (ASCII_CLASSES[unit] << 2) | 1;
  if (unit >= 0xd800 && unit <= 0xdbff && index + 1 < end) {
    const low = text.charCodeAt(index + 1);
    if (low >= 0xdc00 && low <= 0xdfff) {
      return (classOf(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)) << 2) | 2;
    }
  }
  return (classOf(unit) << 2) | 1;
}

/** End (exclusive) of the pre-token that starts at `start` within text[start, end). */
export function preTokenEnd(text: string, start: number, end: number): number {
  const first = text.charCodeAt(start);
  if (first === APOSTROPHE) {
    const contraction = contractionLength(text, start, end);
    if (contraction !== 0) return start + contraction;
  }
  let packed = classAndWidthAt(text, start, end);
  let cls = packed >> 2;
  let index = start + (packed & 3);
  if (first === SPACE_CHAR && index < end) {
    packed = classAndWidthAt(text, index, end);
    if (packed >> 2 !== SPACE) {
      cls = packed >> 2;
      index += packed & 3;
    }
  }
  if (cls !== SPACE) {
    while (index < end) {
      const unit = text.charCodeAt(index);
      if (unit < 0x80) {
        if (ASCII_CLASSES[unit] !== cls) break;
        index++;
      } else {
        packed = classAndWidthAt(text, index, end);
        if (packed >> 2 !== cls) break;
        index += packed & 3;
      }
    }
    return index;
  }
  // Whitespace is always one code unit wide.
  while (index < end && classAndWidthAt(text, index, end) >> 2 === SPACE) index++;
  if (index === end) return end;
  return index - start >= 2 ? index - 1 : index;
}
