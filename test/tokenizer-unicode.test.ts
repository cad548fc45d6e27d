/**
 * The Unicode data in lib/tokenizer/unicode.ts against Hugging Face `tokenizers` itself: the
 * pre-tokenizer's character classes and the NFC normalizer, over a sample of every plane and all of the
 * scripts whose data differs between Unicode versions.
 */
import { byteLevelPreTokenizer, nfcNormalizer } from '@anush008/tokenizers';
import { BYTE_TO_CHAR } from '../lib/tokenizer/byte-level';
import { preTokenEnd } from '../lib/tokenizer/pretokenize';
import { CLASS_RUNS, classOf, LETTER, NUMBER, OTHER, SPACE, nfcLikeReference } from '../lib/tokenizer/unicode';

/** Scripts added in Unicode 16 and 17, and marks whose normalization data came after Unicode 9. */
const VERSION_SENSITIVE_RANGES: readonly [number, number][] = [
  [0x0897, 0x08d3], [0x1ab0, 0x1aff], [0x1df6, 0x1dff], [0xa7c0, 0xa7ff],
  [0x105c0, 0x105ff], [0x10940, 0x1095f], [0x10d40, 0x10d8f], [0x10ec0, 0x10eff], [0x11380, 0x113ff],
  [0x11bc0, 0x11bff], [0x11db0, 0x11def], [0x16100, 0x1613f], [0x16d40, 0x16d7f], [0x16ea0, 0x16edf],
  [0x16ff0, 0x16fff], [0x18d00, 0x18dff], [0x1e4d0, 0x1e4ff], [0x1e5d0, 0x1e5ff], [0x1e6c0, 0x1e6ff],
  [0x2b73a, 0x2b73f], [0x2cea0, 0x2ceaf], [0x323a0, 0x323bf], [0x33470, 0x3347f],
];

function sampledCodePoints(stride: number): number[] {
  const codePoints = new Set<number>();
  for (let codePoint = 0; codePoint < 0x110000; codePoint += stride) codePoints.add(codePoint);
  for (const [first, last] of VERSION_SENSITIVE_RANGES) for (let c = first; c <= last; c++) codePoints.add(c);
  return [...codePoints].filter((c) => c < 0xd800 || c > 0xdfff);
}

function byteLevel(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((byte) => String.fromCharCode(BYTE_TO_CHAR[byte])).join('');
}

function ourPreTokens(text: string): string[] {
  const tokens: string[] = [];
  for (let start = 0; start < text.length; ) {
    const end = preTokenEnd(text, start, text.length);
    tokens.push(byteLevel(text.slice(start, end)));
    start = end;
  }
  return tokens;
}

test('the class table covers every code point, ASCII as the regex says', () => {
  let total = 0;
  for (const [, length] of CLASS_RUNS.matchAll(/[LNSO]([0-9a-z]+)/g)) total += parseInt(length, 36);
  expect(total).toBe(0x110000);
  expect([classOf(0x41), classOf(0x39), classOf(0x20), classOf(0x0a), classOf(0x21), classOf(0x5f)]).toEqual([LETTER, NUMBER, SPACE, SPACE, OTHER, OTHER]);
  expect([classOf(0x85), classOf(0x3000), classOf(0xfeff), classOf(0x1c)]).toEqual([SPACE, SPACE, OTHER, OTHER]);
});

test('pre-tokens equal the reference ByteLevel pre-tokenizer around sampled code points', () => {
  const reference = byteLevelPreTokenizer(false, true);
  const mismatches: string[] = [];
  for (const codePoint of sampledCodePoints(29)) {
    const c = String.fromCodePoint(codePoint);
    const probe = `a${c}a 0${c}0 !${c}! ${c}${c}\t${c} \n${c}`;
    const theirs = reference.preTokenizeString(probe).map(([token]) => token);
    if (JSON.stringify(ourPreTokens(probe)) !== JSON.stringify(theirs)) mismatches.push(`U+${codePoint.toString(16)}`);
  }
  expect(mismatches.slice(0, 20)).toEqual([]);
});

test('NFC equals the reference normalizer around sampled code points', () => {
  const reference = nfcNormalizer();
  const mismatches: string[] = [];
  for (const codePoint of sampledCodePoints(5)) {
    const c = String.fromCodePoint(codePoint);
    // Alone, doubled (compositions of new characters), after U+0345 (combining class reordering), decomposed.
    for (const probe of [c, `x\u0345${c}${c}`, `${c.normalize('NFD')}\u0316`]) {
      if (nfcLikeReference(probe) !== reference.normalizeString(probe)) {
        mismatches.push(`U+${codePoint.toString(16)} in ${JSON.stringify(probe)}`);
        break;
      }
    }
  }
  expect(mismatches.slice(0, 20)).toEqual([]);
});
