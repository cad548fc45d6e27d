/**
 * Seeded fuzzing of the tokenizer.json loader: structural mutations of a small byte-level BPE tokenizer, and
 * byte-level damage of its files, must either load or throw a FlashMptError. A mutant that loads must then
 * encode and decode without any other error: ids in range, decode(encode(text)) accepted, streaming equal to
 * one-shot decoding, and E_TOKEN_RANGE for ids it has no token for.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlashMptError } from '../lib/errors';
import { Tokenizer } from '../lib/tokenizer';
import { Fuzzer, fuzz, rng } from './helpers/fuzz';
import { Json, tinyTokenizerJson } from './helpers/tiny-tokenizer';

const CASES = 12_000;

/** Strings that stress the tables and the added-token regex: empty, prototype keys, regex syntax, surrogates, NFC pairs. */
const STRINGS = ['', ' ', 'h', 'he', 'hello', 'Ġ', 'Ġw', '<|endoftext|>', '<eos>', '__proto__', 'constructor', 'toString', '(', '.*', '\\', '[', '$', '\ud800', '\udc00x', '😀', 'e\u0301', 'é', 'ﬁ', '\u0000', 'x'.repeat(300)];
const IDS = [0, 1, 255, 256, 264, 265, 266, 267, 300, 1000, -1, 0.5, 2 ** 16, 2 ** 24, 2 ** 31, 2 ** 32, 2 ** 53, Number.NaN, Infinity, '7', null, true];
/** The largest id accepted: valid, but its id-indexed tables take ~100 ms to build, so it is drawn rarely. */
const LARGEST_ID = 2 ** 24 - 1;
const TEXTS = [
  'hello world',
  'Hello  world!\n\tdone',
  '<|endoftext|>hello<eos> <eos>x',
  'e\u0301 ﬁ Å Ω',
  '😀 \ud800 x\udc00 \u0000',
  `${'a'.repeat(70)} ${'hel'.repeat(40)}`,
  ' ',
  "12 345 it's (.*) [$]",
  '__proto__ constructor toString',
];

/** Tokenizer-specific damage on a deep copy: ids, merges, added tokens and options, each chosen to hit an edge. */
function mutateTokenizer(f: Fuzzer, source: Json): { json: Json; mutations: string[] } {
  let json = structuredClone(source);
  const mutations: string[] = [];
  for (let round = 1 + f.int(3); round > 0; round--) {
    const model = typeof json.model === 'object' && json.model !== null ? json.model : (json.model = {});
    const vocab = typeof model.vocab === 'object' && model.vocab !== null ? model.vocab : (model.vocab = {});
    const merges: unknown[] = Array.isArray(model.merges) ? model.merges : (model.merges = []);
    const addedTokens: unknown[] = Array.isArray(json.added_tokens) ? json.added_tokens : (json.added_tokens = []);
    const vocabKeys = Object.keys(vocab);
    const token = () => (vocabKeys.length > 0 && f.random() < 0.7 ? f.pick(vocabKeys) : f.pick(STRINGS));
    const id = () => (f.random() < 0.005 ? LARGEST_ID : f.pick(IDS));
    const change = (what: string, apply: () => void) => {
      apply();
      mutations.push(what);
    };
    switch (f.int(9)) {
      case 0: {
        const key = token();
        const value = id();
        change(`vocab[${JSON.stringify(key)}] = ${String(value)}`, () => (vocab[key] = value));
        break;
      }
      case 1: {
        const key = token();
        change(`delete vocab[${JSON.stringify(key)}]`, () => delete vocab[key]);
        break;
      }
      case 2: {
        const at = f.int(merges.length + 1);
        const merge = f.pick([`${token()} ${token()}`, [token(), token()], token(), ` ${token()}`, `${token()}  ${token()}`, [token()], 42, null]);
        change(`merges[${at}] = ${JSON.stringify(merge)}`, () => (merges[at] = merge));
        break;
      }
      case 3: {
        const added = {
          id: id(),
          content: f.pick(STRINGS),
          special: f.random() < 0.5,
          single_word: f.random() < 0.3,
          lstrip: f.random() < 0.3,
          rstrip: f.random() < 0.3,
          normalized: f.pick([true, false, undefined]),
        };
        const at = f.int(addedTokens.length + 1);
        change(`added_tokens[${at}] = ${JSON.stringify(added)}`, () => (addedTokens[at] = added));
        break;
      }
      case 4: {
        const unk = f.pick([null, token(), '<unk>']);
        const fuse = f.random() < 0.5;
        change(`unk_token ${JSON.stringify(unk)}, fuse_unk ${fuse}`, () => Object.assign(model, { unk_token: unk, fuse_unk: fuse }));
        break;
      }
      case 5: {
        const options = { add_prefix_space: f.random() < 0.5, use_regex: f.random() < 0.7 };
        change(`pre_tokenizer ${JSON.stringify(options)}`, () => (json.pre_tokenizer = { type: 'ByteLevel', ...options }));
        break;
      }
      case 6: {
        const normalizer = f.pick([null, { type: 'NFC' }, { type: 'Sequence', normalizers: [] }, { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'NFC' }] }, { type: 'NFKC' }]);
        const ignoreMerges = f.random() < 0.3;
        change(`normalizer ${JSON.stringify(normalizer)}, ignore_merges ${ignoreMerges}`, () => {
          json.normalizer = normalizer;
          model.ignore_merges = ignoreMerges;
        });
        break;
      }
      default:
        json = f.mutateJson(json) as Json;
        mutations.push('a generic JSON mutation');
    }
  }
  return { json, mutations };
}

/** What a loaded tokenizer promises on any text and id; a plain Error here counts as an escape. */
function exercise(f: Fuzzer, tokenizer: Tokenizer): void {
  const { vocabSize } = tokenizer;
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new Error(`vocabSize ${vocabSize}`);
  for (const text of TEXTS) {
    for (const allowSpecial of [true, false]) {
      const ids = tokenizer.encode(text, { allowSpecial });
      if (!ids.every((id) => Number.isInteger(id) && id >= 0 && id < vocabSize)) throw new Error(`encode(${JSON.stringify(text)}) gave ids outside [0, ${vocabSize})`);
      let whole: string;
      try {
        whole = tokenizer.decode(ids);
      } catch (err) {
        throw new Error(`decode rejected encode's ids of ${JSON.stringify(text)}: ${String(err)}`);
      }
      const decoder = tokenizer.createDecoder();
      const streamed = ids.map((id) => decoder.push(id)).join('') + decoder.flush();
      if (streamed !== whole) throw new Error(`streaming decode differs from decode on ${JSON.stringify(text)}`);
    }
  }
  const probes = [f.int(vocabSize), f.int(vocabSize), vocabSize, -1, 0.5, f.pick(IDS) as number];
  for (const id of probes) {
    try {
      tokenizer.decode([id], { skipSpecialTokens: f.random() < 0.5 });
    } catch (err) {
      if (!(err instanceof FlashMptError && err.code === 'E_TOKEN_RANGE')) throw err;
    }
  }
}

describe('fuzzing the tokenizer.json loader (seeded)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-mpt-fuzz-tokenizer-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`${CASES} mutated tokenizers (structural and byte-level), only FlashMptError, encode/decode of loaded ones too`, () => {
    const f = new Fuzzer(rng(0x70c3));
    const base = tinyTokenizerJson();
    const seeds: Json[] = [
      base,
      // the other code paths: merges as pairs, no NFC, no regex, a prefix space, an unk token, non-special added tokens
      (() => {
        const json = tinyTokenizerJson();
        json.model.merges = json.model.merges.map((merge: string) => merge.split(' '));
        json.normalizer = null;
        json.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, use_regex: false };
        json.model.unk_token = 'h';
        json.added_tokens.push({ id: 270, content: ' hello', special: false, single_word: true, lstrip: true, rstrip: true, normalized: true });
        return json;
      })(),
    ];
    const seedTexts = seeds.map((json) => new TextEncoder().encode(JSON.stringify(json)));
    const configText = new TextEncoder().encode(JSON.stringify({ eos_token: '<eos>', bos_token: { content: '<|endoftext|>' } }));
    const tokenizerFile = path.join(dir, 'tokenizer.json');
    const configFile = path.join(dir, 'tokenizer_config.json');
    let caseNumber = 0;

    const outcome = fuzz(
      CASES,
      () => {
        caseNumber++;
        if (f.random() < 0.5) {
          const { json, mutations } = mutateTokenizer(f, f.pick(seeds));
          return { load: () => Tokenizer.fromJSON(json), describe: `case ${caseNumber}: ${mutations.join('; ')}` };
        }
        // Byte-level damage goes through the file loader, which owns JSON parsing and tokenizer_config.json.
        const text = f.mutateBytes(f.pick(seedTexts));
        const config = f.random() < 0.3 ? (f.random() < 0.5 ? configText : f.mutateBytes(configText)) : undefined;
        return {
          load: () => {
            fs.writeFileSync(tokenizerFile, text);
            if (config) fs.writeFileSync(configFile, config);
            else fs.rmSync(configFile, { force: true });
            return Tokenizer.fromFileSync(tokenizerFile);
          },
          describe: `case ${caseNumber}: byte-level damage of tokenizer.json${config ? ' with a tokenizer_config.json' : ''}`,
        };
      },
      ({ load }) => {
        const tokenizer = load();
        // Past loading every failure is a bug, typed or not.
        try {
          exercise(f, tokenizer);
        } catch (err) {
          throw new Error(`a loaded tokenizer failed: ${String(err)}`);
        }
      },
      ({ describe }) => describe,
    );
    expect(outcome.escaped).toEqual([]);
    expect(outcome.accepted).toBeGreaterThan(CASES / 10);
    expect(outcome.rejected.get('E_TOKENIZER')).toBeGreaterThan(CASES / 4);
    console.log(`tokenizer fuzz: ${outcome.accepted} loaded and exercised, rejected ${JSON.stringify(Object.fromEntries(outcome.rejected))}`);
  });
});
