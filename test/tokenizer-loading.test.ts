/**
 * Loading and validation, on a small byte-level BPE tokenizer built here (no shared data needed):
 * typed errors that name the bad field, eos from tokenizer_config.json, range errors in decode.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlashMptError } from '../lib/errors';
import { Tokenizer } from '../lib/tokenizer';
import { Json, MERGES, tinyTokenizerJson } from './helpers/tiny-tokenizer';

const HELLO = 256 + MERGES.indexOf('hell o');
const WORLD = 256 + MERGES.indexOf('Ġworl d');

function loadError(json: unknown): FlashMptError {
  try {
    Tokenizer.fromJSON(json);
  } catch (err) {
    expect(err).toBeInstanceOf(FlashMptError);
    return err as FlashMptError;
  }
  throw new Error('expected the tokenizer to be rejected');
}

describe('tokenizer built from a small tokenizer.json', () => {
  test('encodes with its merges and decodes back', () => {
    const tokenizer = Tokenizer.fromJSON(tinyTokenizerJson());
    expect(tokenizer.encode('hello world')).toEqual([HELLO, WORLD]);
    expect(tokenizer.decode([HELLO, WORLD])).toBe('hello world');
    expect(tokenizer.vocabSize).toBe(256 + MERGES.length + 2);
    expect(tokenizer.eosTokenId).toBe(tokenizer.tokenToId('<|endoftext|>'));
  });

  test('merges given as ["left", "right"] pairs work like "left right" strings', () => {
    const json = tinyTokenizerJson();
    json.model.merges = MERGES.map((merge) => merge.split(' '));
    expect(Tokenizer.fromJSON(json).encode('hello world')).toEqual([HELLO, WORLD]);
  });

  test('a TemplateProcessing post-processor is accepted and not applied: encode gives the text ids alone', () => {
    const json = tinyTokenizerJson();
    json.post_processor = { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] };
    expect(Tokenizer.fromJSON(json).encode('hello world')).toEqual([HELLO, WORLD]);
  });

  test('a tokenizer without <|endoftext|> and without config has no eos', () => {
    const json = tinyTokenizerJson();
    json.added_tokens = [];
    expect(Tokenizer.fromJSON(json).eosTokenId).toBeUndefined();
  });
});

describe('malformed tokenizer.json gives E_TOKENIZER naming the field', () => {
  const cases: [string, (json: Json) => unknown, string][] = [
    ['not an object', () => 'nope', '(root)'],
    ['no model', (json) => ({ ...json, model: undefined }), 'model'],
    ['a vocabulary id that is not an integer', (json) => ((json.model.vocab.he = 1.5), json), 'model.vocab["he"]'],
    ['a negative vocabulary id', (json) => ((json.model.vocab.ll = -3), json), 'model.vocab["ll"]'],
    ['vocab that is an array', (json) => ((json.model.vocab = []), json), 'model.vocab'],
    ['merges that are not an array', (json) => ((json.model.merges = 'h e'), json), 'model.merges'],
    ['a merge without a space', (json) => ((json.model.merges[3] = 'hello'), json), 'model.merges[3]'],
    ['a merge with two spaces', (json) => ((json.model.merges[1] = 'l l l'), json), 'model.merges[1]'],
    ['a merge of a token not in the vocabulary', (json) => ((json.model.merges[2] = 'he zz'), json), 'model.merges[2]'],
    ['a merge whose result is not in the vocabulary', (json) => (delete json.model.vocab.hello, json), 'model.merges[3]'],
    ['an unsupported model', (json) => ((json.model.type = 'WordPiece'), json), 'model.type'],
    ['BPE dropout', (json) => ((json.model.dropout = 0.1), json), 'model.dropout'],
    ['a subword prefix', (json) => ((json.model.continuing_subword_prefix = '##'), json), 'model.continuing_subword_prefix'],
    ['an unknown unk_token', (json) => ((json.model.unk_token = '<unk>'), json), 'model.unk_token'],
    ['an unsupported normalizer', (json) => ((json.normalizer = { type: 'Lowercase' }), json), 'normalizer'],
    ['an unsupported pre-tokenizer', (json) => ((json.pre_tokenizer = { type: 'Metaspace' }), json), 'pre_tokenizer.type'],
    ['no decoder', (json) => ((json.decoder = null), json), 'decoder'],
    ['an unsupported post-processor', (json) => ((json.post_processor = { type: 'RobertaProcessing' }), json), 'post_processor'],
    ['an added token with a negative id', (json) => ((json.added_tokens[0].id = -1), json), 'added_tokens[0].id'],
    ['an added token id too large for the id tables', (json) => ((json.added_tokens[0].id = 2 ** 32), json), 'added_tokens[0].id'],
    ['an added token with empty content', (json) => ((json.added_tokens[1].content = ''), json), 'added_tokens[1].content'],
  ];

  test.each(cases)('%s', (_name, corrupt, field) => {
    const error = loadError(corrupt(tinyTokenizerJson()));
    expect(error.code).toBe('E_TOKENIZER');
    expect(error.message).toContain(`tokenizer.json: ${field}:`);
    expect((error.details as { field: string }).field).toBe(field);
  });
});

describe('decode rejects ids outside the vocabulary with E_TOKEN_RANGE', () => {
  const tokenizer = Tokenizer.fromJSON(tinyTokenizerJson());

  test.each([-1, 1.5, Number.NaN, 10_000, 256 + MERGES.length + 2])('id %p', (id) => {
    for (const attempt of [() => tokenizer.decode([HELLO, id]), () => tokenizer.createDecoder().push(id)]) {
      expect(attempt).toThrow(FlashMptError);
      try {
        attempt();
      } catch (err) {
        expect((err as FlashMptError).code).toBe('E_TOKEN_RANGE');
      }
    }
  });

  test('a hole in the vocabulary ids is out of range too', () => {
    const json = tinyTokenizerJson();
    json.added_tokens[1].id = 400;
    const holey = Tokenizer.fromJSON(json);
    expect(holey.vocabSize).toBe(401);
    expect(() => holey.decode([300])).toThrow(expect.objectContaining({ code: 'E_TOKEN_RANGE' }));
    expect(holey.decode([400])).toBe('<eos>');
  });

  test('encode of a non-string is E_INVALID_ARGUMENT', () => {
    expect(() => tokenizer.encode(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});

describe('files: tokenizer_config.json beside tokenizer.json', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-mpt-tokenizer-'));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const writeConfig = (config: unknown) => fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  const load = () => Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));

  test('eos_token as a string', async () => {
    writeConfig({ eos_token: '<eos>', bos_token: '<|endoftext|>' });
    const tokenizer = await load();
    expect(tokenizer.eosTokenId).toBe(tokenizer.tokenToId('<eos>'));
    expect(Tokenizer.fromFileSync(path.join(dir, 'tokenizer.json')).eosTokenId).toBe(tokenizer.eosTokenId);
  });

  test('eos_token as an object with content', async () => {
    writeConfig({ eos_token: { __type: 'AddedToken', content: '<eos>', lstrip: false, normalized: false, rstrip: false, single_word: false } });
    const tokenizer = await load();
    expect(tokenizer.eosTokenId).toBe(tokenizer.tokenToId('<eos>'));
  });

  test('without eos_token, <|endoftext|> is the eos', async () => {
    writeConfig({ model_max_length: 2048 });
    const tokenizer = await load();
    expect(tokenizer.eosTokenId).toBe(tokenizer.tokenToId('<|endoftext|>'));
  });

  test('an eos_token that is not in the vocabulary is E_TOKENIZER', async () => {
    writeConfig({ eos_token: '</s>' });
    await expect(load()).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringContaining('eos_token') });
  });

  test('a malformed eos_token is E_TOKENIZER naming it', async () => {
    writeConfig({ eos_token: 7 });
    await expect(load()).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringContaining('tokenizer_config.json: eos_token') });
  });

  test('invalid JSON and a missing file are E_TOKENIZER', async () => {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    await expect(load()).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringContaining('not valid JSON') });
    await expect(Tokenizer.fromFile(path.join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'E_TOKENIZER' });
    expect(() => Tokenizer.fromFileSync(path.join(dir, 'missing.json'))).toThrow(expect.objectContaining({ code: 'E_TOKENIZER' }));
  });
});
