import { Tokenizer } from '../lib/tokenizer';
import { BYTE_TO_CHAR } from '../lib/tokenizer/byte-level';
import { describeWithData, sharedPath } from './helpers/data';
import { seededRandom } from '../lib/sampling/rng';

describeWithData('streaming decoder', 'data/gpt-neox-20b/tokenizer.json', () => {
  let tokenizer: Tokenizer;
  /** Tokens of one byte 0x80-0xff: each is a piece of a multi-byte character. */
  let byteTokens: number[];
  beforeAll(() => {
    tokenizer = Tokenizer.fromFileSync(sharedPath('data/gpt-neox-20b/tokenizer.json'));
    byteTokens = Array.from({ length: 128 }, (_, i) => tokenizer.tokenToId(String.fromCharCode(BYTE_TO_CHAR[0x80 + i]))).filter(
      (id): id is number => id !== undefined,
    );
  });

  function stream(ids: readonly number[], skipSpecialTokens = false): string[] {
    const decoder = tokenizer.createDecoder({ skipSpecialTokens });
    return [...ids.map((id) => decoder.push(id)), decoder.flush()];
  }

  test('a character split over several tokens comes out whole, once complete', () => {
    const ids = tokenizer.encode('a😀b');
    expect(ids.length).toBeGreaterThan(3); // the emoji takes several byte tokens
    const chunks = stream(ids);
    expect(chunks.join('')).toBe('a😀b');
    expect(chunks).toContain('');
    expect(chunks.some((chunk) => chunk.includes('😀'))).toBe(true);
    expect(chunks.join('|')).not.toContain('\ufffd');
  });

  test('text decoded token by token equals the whole decode, with no broken characters', () => {
    const random = seededRandom(1);
    const alphabet = ['Hello', ' wörld', ' 日本語', '😀', '👨\u200d👩\u200d👧', ' ', '\n', 'ﬁ', 'e\u0301', '<|endoftext|>', '  ', '한국어', '\u{10348}'];
    for (let i = 0; i < 300; i++) {
      let text = '';
      const pieces = Math.floor(random() * 20);
      for (let k = 0; k < pieces; k++) text += alphabet[Math.floor(random() * alphabet.length)];
      const ids = tokenizer.encode(text);
      for (const skipSpecialTokens of [false, true]) {
        const chunks = stream(ids, skipSpecialTokens);
        expect(chunks.join('')).toBe(tokenizer.decode(ids, { skipSpecialTokens }));
        expect(chunks.filter((chunk) => chunk.includes('\ufffd'))).toEqual([]);
      }
    }
  });

  test('random ids, broken UTF-8 included: the concatenation equals decode', () => {
    const random = seededRandom(2);
    for (let i = 0; i < 500; i++) {
      const ids = Array.from({ length: Math.floor(random() * 25) }, () =>
        random() < 0.5 ? byteTokens[Math.floor(random() * byteTokens.length)] : Math.floor(random() * tokenizer.vocabSize),
      );
      for (const skipSpecialTokens of [false, true]) {
        expect(stream(ids, skipSpecialTokens).join('')).toBe(tokenizer.decode(ids, { skipSpecialTokens }));
      }
    }
  });

  test('flush ends the stream: held bytes become U+FFFD and the decoder starts over', () => {
    const emoji = tokenizer.encode('😀');
    const decoder = tokenizer.createDecoder();
    expect(decoder.push(emoji[0])).toBe('');
    expect(decoder.flush()).toBe(tokenizer.decode([emoji[0]]));
    expect(decoder.flush()).toBe('');
    expect(emoji.map((id) => decoder.push(id)).join('') + decoder.flush()).toBe('😀');
  });

  test('special tokens are skipped only when asked', () => {
    const ids = [0, 12092, 1];
    expect(stream(ids).join('')).toBe('<|endoftext|>Hello<|padding|>');
    expect(stream(ids, true).join('')).toBe('Hello');
  });
});
