/**
 * Property tests against Hugging Face `tokenizers` (Rust, through @anush008/tokenizers): seeded random
 * strings from all planes must get the same ids, on the published tokenizer and on variants that
 * exercise the other options of the format.
 */
import * as fs from 'node:fs';
import { nfcNormalizer, Tokenizer as ReferenceTokenizer } from '@anush008/tokenizers';
import { Tokenizer } from '../lib/tokenizer';
import { BYTE_TO_CHAR } from '../lib/tokenizer/byte-level';
import { describeWithData, sharedPath } from './helpers/data';
import { seededRandom } from '../lib/sampling/rng';

const TOKENIZER = 'data/gpt-neox-20b/tokenizer.json';

/** Fragments that hit the tokenizer's edge cases: contractions, odd spaces, marks, specials and their pieces. */
const FRAGMENTS = [
  ...[' ', '  ', '   ', '\t', '\n', '\r\n', '\n\n', ' \n', '\u00a0', '\u3000', '\u2028', '\u0085', '\u000b', '\u001f', '\ufeff', '\u200b'],
  ...["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'", "''", ' \'s', "don't"],
  ...['é', 'e\u0301', 'A\u030a', '\u212b', '\u0301', '\u0300\u0316', 'a\u0345\u0301', '\u1100\u1161\u11a8', '한국어', 'ﬁ', 'Ⅻ', '½', '٣', '²'],
  ...['中文', '日本語', 'Привет', 'Ελληνικά', 'العربية', 'हिन्दी', 'ไทย'],
  ...['😀', '👨\u200d👩\u200d👧', '👍🏽', '🇫🇷', '\u{1F9D1}\u200d\u{1F4BB}'],
  ...['<|endoftext|>', '<|padding|>', '<|endoftext', 'endoftext|>', '<|', '|>', '<mask>', 'word', 'words', '_word'],
  ...['Hello', ' world', 'HELLO', '123', ' 4567', '3.14', '$', '...', '—', '::', '=>', '{}', '\\', '\u0000', '\u007f'],
];

/** Characters whose Unicode data changed after the versions the reference uses (see lib/tokenizer/unicode.ts). */
const NEWER_UNICODE = ['\u{113c2}\u{113c2}', '\u{105d2}\u0307', '\u{16d63}\u{16d67}', 'x\u0345\u{1e4ec}', 'a\u{1dfa}\u0316', '\u{323b0}', 'a\u{10940}b', '\u{11de0}1'];

function randomCodePoint(random: () => number): number {
  const r = random();
  if (r < 0.3) return 0x20 + Math.floor(random() * 0x5f); // printable ASCII
  if (r < 0.45) return Math.floor(random() * 0x800); // Latin, Greek, Cyrillic, Hebrew, Arabic, marks
  if (r < 0.75) return Math.floor(random() * 0x10000); // the BMP, lone surrogates included
  return Math.floor(random() * 0x110000); // every plane
}

function randomString(random: () => number, fragments = [...FRAGMENTS, ...NEWER_UNICODE]): string {
  let text = '';
  const pieces = Math.floor(random() * 40);
  for (let i = 0; i < pieces; i++) {
    const r = random();
    if (r < 0.4) text += fragments[Math.floor(random() * fragments.length)];
    else if (r < 0.5) text += ' '.repeat(1 + Math.floor(random() * 30));
    else if (r < 0.55) text += 'abc'.repeat(1 + Math.floor(random() * 50));
    else {
      const codePoint = randomCodePoint(random);
      // fromCharCode keeps lone surrogates (fromCodePoint would too, but this says it).
      text += codePoint <= 0xffff ? String.fromCharCode(codePoint) : String.fromCodePoint(codePoint);
    }
  }
  return text;
}

function wellFormed(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A GPT-2 style file: no normalizer, a prefix space before each piece. */
function gpt2Style(json: Json): Json {
  return { ...json, normalizer: null, pre_tokenizer: { ...json.pre_tokenizer, add_prefix_space: true } };
}

/** Added tokens with lstrip/rstrip/single_word/normalized, a Sequence normalizer, merges as pairs. */
function addedTokenOptions(json: Json): Json {
  const added = (id: number, content: string, options: Json) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false, ...options,
  });
  return {
    ...json,
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }] },
    added_tokens: [
      ...json.added_tokens,
      // Ids as Hugging Face assigns them: a token already in the vocabulary keeps its id.
      added(50277, '<mask>', { special: true, lstrip: true, rstrip: true }),
      added(json.model.vocab.word, 'word', { single_word: true, normalized: true }),
      added(50278, '\u212b', { normalized: true }),
    ],
    model: { ...json.model, merges: (json.model.merges as string[]).map((merge) => merge.split(' ')) },
  };
}

async function referenceIds(reference: ReferenceTokenizer, texts: string[]): Promise<number[][]> {
  const encodings = await reference.encodeBatch(texts);
  return encodings.map((encoding) => encoding.getIds());
}

function firstMismatches(texts: string[], ours: number[][], theirs: number[][]): string[] {
  const mismatches: string[] = [];
  for (let i = 0; i < texts.length && mismatches.length < 5; i++) {
    if (JSON.stringify(ours[i]) !== JSON.stringify(theirs[i])) {
      mismatches.push(`${JSON.stringify(texts[i])}: ours ${JSON.stringify(ours[i])}, reference ${JSON.stringify(theirs[i])}`);
    }
  }
  return mismatches;
}

describeWithData('tokenizer ids equal Hugging Face tokenizers on random text', TOKENIZER, () => {
  let published: Json;
  beforeAll(() => {
    published = JSON.parse(fs.readFileSync(sharedPath(TOKENIZER), 'utf8')) as Json;
  });

  const variants: [string, (json: Json) => Json, number, number][] = [
    ['GPT-NeoX-20B as published', (json) => json, 3000, 1],
    ['no normalizer and add_prefix_space (GPT-2 style)', gpt2Style, 800, 2],
    ['added tokens with lstrip/rstrip/single_word/normalized, merges as pairs', addedTokenOptions, 800, 3],
  ];

  test.each(variants)('%s', async (_name, variant, count, seed) => {
    const json = variant(published);
    const ours = Tokenizer.fromJSON(json);
    const reference = ReferenceTokenizer.fromString(JSON.stringify(json));
    const random = seededRandom(seed);
    const texts = Array.from({ length: count }, () => randomString(random));
    const ourIds = texts.map((text) => ours.encode(text));
    expect(firstMismatches(texts, ourIds, await referenceIds(reference, texts))).toEqual([]);
  });

  test('allowSpecial: false encodes special tokens as text, like a file without them', async () => {
    const withoutSpecials = { ...published, added_tokens: (published.added_tokens as Json[]).filter((token) => !token.special) };
    const ours = Tokenizer.fromJSON(published);
    const reference = ReferenceTokenizer.fromString(JSON.stringify(withoutSpecials));
    const random = seededRandom(6);
    const texts = Array.from({ length: 500 }, () => randomString(random));
    const ourIds = texts.map((text) => ours.encode(text, { allowSpecial: false }));
    expect(firstMismatches(texts, ourIds, await referenceIds(reference, texts))).toEqual([]);
  });

  test('decode(encode(s)) is s in NFC (lone surrogates as U+FFFD)', () => {
    const tokenizer = Tokenizer.fromJSON(published);
    // Hugging Face's NFC tables predate the runtime's (see lib/tokenizer/unicode.ts): the ids follow
    // Hugging Face, so the round trip gives its NFC, which String.prototype.normalize matches except
    // on a few characters added to Unicode since.
    const referenceNfc = nfcNormalizer();
    const random = seededRandom(4);
    const failures: string[] = [];
    let sameAsRuntimeNfc = 0;
    const count = 2000;
    for (let i = 0; i < count; i++) {
      const text = wellFormed(randomString(random, FRAGMENTS));
      const expected = referenceNfc.normalizeString(text);
      if (expected === text.normalize('NFC')) sameAsRuntimeNfc++;
      if (tokenizer.decode(tokenizer.encode(text)) !== expected) failures.push(JSON.stringify(text));
    }
    expect(failures.slice(0, 5)).toEqual([]);
    expect(sameAsRuntimeNfc).toBeGreaterThan(count * 0.98);
  });

  test('decode of random ids (broken UTF-8 included) equals the reference, with and without specials', async () => {
    const tokenizer = Tokenizer.fromJSON(published);
    const reference = ReferenceTokenizer.fromString(JSON.stringify(published));
    // Single-byte tokens 0x80-0xff split characters apart (bytes that never occur in UTF-8 have none).
    const splitters = Array.from({ length: 128 }, (_, i) => tokenizer.tokenToId(String.fromCharCode(BYTE_TO_CHAR[0x80 + i]))).filter(
      (id): id is number => id !== undefined,
    );
    const random = seededRandom(5);
    for (let i = 0; i < 300; i++) {
      const ids = Array.from({ length: Math.floor(random() * 30) }, () =>
        random() < 0.4 ? splitters[Math.floor(random() * splitters.length)] : Math.floor(random() * tokenizer.vocabSize),
      );
      for (const skipSpecialTokens of [false, true]) {
        expect(tokenizer.decode(ids, { skipSpecialTokens })).toBe(await reference.decode(ids, skipSpecialTokens));
      }
    }
  });

  test('pathological input: long words and runs match the reference', async () => {
    const tokenizer = Tokenizer.fromJSON(published);
    const reference = ReferenceTokenizer.fromString(JSON.stringify(published));
    const texts = ['a'.repeat(5000), '1'.repeat(3000), '😀'.repeat(1000), ' '.repeat(1000) + 'x', '\n'.repeat(500), "'s".repeat(500), 'ab'.repeat(3000)];
    const ourIds = texts.map((text) => tokenizer.encode(text));
    expect(firstMismatches(texts, ourIds, await referenceIds(reference, texts))).toEqual([]);
  });
});
