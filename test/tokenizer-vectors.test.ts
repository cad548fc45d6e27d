import * as fs from 'node:fs';
import { Tokenizer } from '../lib/tokenizer';
import { describeWithData, sharedPath } from './helpers/data';

interface VectorCase {
  text: string;
  ids: number[];
  /** Hugging Face's decode of `ids` (vectors.json only). */
  decoded?: string;
}

const DIR = 'data/gpt-neox-20b';

/** The cases of a vector file ([] when the shared data is absent: the suite is skipped then). */
function loadCases(file: string): VectorCase[] {
  const filePath = sharedPath(DIR, file);
  if (!fs.existsSync(filePath)) return [];
  return (JSON.parse(fs.readFileSync(filePath, 'utf8')) as { cases: VectorCase[] }).cases;
}

function label(text: string): string {
  const shown = JSON.stringify(text);
  return shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
}

describeWithData('GPT-NeoX-20B tokenizer: published and generated test vectors', `${DIR}/tokenizer.json`, () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await Tokenizer.fromFile(sharedPath(DIR, 'tokenizer.json'));
  });

  for (const file of ['vectors.json', 'public-vectors.json']) {
    describe(file, () => {
      const cases = loadCases(file);
      test('is present and has cases', () => expect(cases.length).toBeGreaterThan(0));
      cases.forEach((c, index) => {
        test(`#${index} ${label(c.text)}`, () => {
          expect(tokenizer.encode(c.text)).toEqual(c.ids);
          expect(tokenizer.decode(c.ids)).toBe(c.decoded ?? c.text.normalize('NFC'));
        });
      });
    });
  }

  test('vocabulary facts of the file', () => {
    expect(tokenizer.vocabSize).toBe(50277);
    expect(tokenizer.eosTokenId).toBe(0);
    expect(tokenizer.tokenToId('<|endoftext|>')).toBe(0);
    expect(tokenizer.tokenToId('<|padding|>')).toBe(1);
    expect(tokenizer.tokenToId('Ġworld')).toBe(1533);
    expect(tokenizer.tokenToId('  ')).toBe(50276);
    expect(tokenizer.tokenToId('no such token')).toBeUndefined();
    // Names of Object.prototype members are looked up like any other token.
    expect(tokenizer.tokenToId('constructor')).toBe(36073);
    expect(tokenizer.tokenToId('hasOwnProperty')).toBeUndefined();
    expect(tokenizer.tokenToId('__proto__')).toBeUndefined();
    expect(tokenizer.idToToken(1533)).toBe('Ġworld');
    expect(tokenizer.idToToken(50254)).toBe(' '.repeat(24));
    expect(tokenizer.idToToken(50277)).toBeUndefined();
  });

  test('special tokens are recognized unless allowSpecial is false', () => {
    const text = 'a<|endoftext|>b';
    expect(tokenizer.encode(text)).toEqual([66, 0, 67]);
    const plain = tokenizer.encode(text, { allowSpecial: false });
    expect(plain).not.toContain(0);
    expect(tokenizer.decode(plain)).toBe(text);
    // Space runs are added tokens too, but not special: they stay.
    expect(tokenizer.encode('a   b', { allowSpecial: false })).toEqual(tokenizer.encode('a   b'));
  });

  test('skipSpecialTokens drops <|endoftext|> and <|padding|> but keeps space runs', () => {
    const ids = [0, 12092, 50276, 1, 10186, 0];
    expect(tokenizer.decode(ids)).toBe('<|endoftext|>Hello  <|padding|>world<|endoftext|>');
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('Hello  world');
  });

  test('decode accepts typed arrays', () => {
    expect(tokenizer.decode(Uint32Array.from([12092, 1533]))).toBe('Hello world');
  });

  test('lone surrogates encode as U+FFFD, as in the reference', () => {
    expect(tokenizer.encode('x\ud800y')).toEqual(tokenizer.encode('x\ufffdy'));
    expect(tokenizer.encode('\udc00')).toEqual(tokenizer.encode('\ufffd'));
    expect(tokenizer.decode(tokenizer.encode('a\ud83dz'))).toBe('a\ufffdz');
  });

  test('a long run without spaces stays fast (heap-based merges)', () => {
    const text = 'ab'.repeat(100_000);
    const start = performance.now();
    const ids = tokenizer.encode(text);
    expect(performance.now() - start).toBeLessThan(5000);
    expect(tokenizer.decode(ids)).toBe(text);
  });
});
