/**
 * forwardPrompts on the CPU engine: several prompts prefilled in shared passes give each sequence the logits and
 * the KV cache of one forward per prompt, bit for bit (short prompts packed together, one longer than a CPU pass
 * of 256 rows run alone); bad requests are refused with typed errors before any sequence changes.
 */
import { parseConfig } from '../lib/config';
import { createRandomModel, Model } from '../lib/model';
import type { NativeEngine } from '../lib/native';
import { nativeCodeOf } from './helpers/native-errors';
import { promptsBesideSolo } from './helpers/prompts';

const config = parseConfig(
  {
    model_type: 'mpt', d_model: 64, n_heads: 4, n_layers: 2, expansion_ratio: 4, max_seq_len: 512, vocab_size: 1024,
    no_bias: true, attn_config: { alibi: true, qk_ln: true },
  },
  'forwardPrompts test shape',
);
const promptOf = (length: number, salt: number) => Int32Array.from({ length }, (_, i) => (i * 131 + salt * 17 + 3) % config.vocabSize);

describe('forwardPrompts on the CPU engine', () => {
  let model: Model;
  let engine: NativeEngine;
  beforeAll(async () => {
    model = await createRandomModel(config, { device: 'cpu', seed: 11, maxSequences: 80, maxContext: 320 });
    engine = model.live();
  });
  afterAll(() => model?.dispose());

  test.each([
    ['one prompt', [9]],
    ['prompts of 1 to 40 tokens in one pass', [1, 5, 17, 40, 3]],
    ['a prompt longer than a pass between short ones', [4, 300, 2, 250]],
  ])('%s: the logits and the cache of one forward per prompt, bit for bit', async (_, lengths) => {
    const r = await promptsBesideSolo(engine, lengths.map((n, i) => promptOf(n, i)), config.vocabSize);
    expect(Array.from(r.together)).toEqual(Array.from(r.alone));
    expect(Array.from(r.nextTogether)).toEqual(Array.from(r.nextAlone));
  });

  test('bad requests get typed errors and change no sequence', async () => {
    const [a, b] = [engine.createSequence(), engine.createSequence()];
    const released = engine.createSequence();
    engine.releaseSequence(released);
    const i32 = (values: number[]) => Int32Array.from(values);
    const cases: [string, () => Promise<unknown>][] = [
      ['E_INVALID_ARGUMENT', () => engine.forwardPrompts(i32([a, a]), i32([1, 2]), i32([1, 1]))],
      ['E_INVALID_ARGUMENT', () => engine.forwardPrompts(i32([a, b]), i32([1, 2]), i32([2, 0]))],
      ['E_INVALID_ARGUMENT', () => engine.forwardPrompts(i32([a, b]), i32([1, 2, 3]), i32([1, 1]))],
      ['E_INVALID_ARGUMENT', () => engine.forwardPrompts(i32([a]), i32([1, 2]), i32([1, 1]))],
      ['E_INVALID_ARGUMENT', () => engine.forwardPrompts(i32([]), i32([]), i32([]))],
      ['E_INVALID_ARGUMENT', () => engine.forwardPrompts(i32([a, released]), i32([1, 2]), i32([1, 1]))],
      ['E_TOKEN_RANGE', () => engine.forwardPrompts(i32([a, b]), i32([1, config.vocabSize]), i32([1, 1]))],
      ['E_CONTEXT_LENGTH', () => engine.forwardPrompts(i32([a, b]), promptOf(322, 1), i32([1, 321]))],
    ];
    const many = Int32Array.from({ length: 65 }, () => engine.createSequence());
    cases.push(['E_INVALID_ARGUMENT', () => engine.forwardPrompts(many, new Int32Array(65).fill(1), new Int32Array(65).fill(1))]);
    for (const [code, call] of cases) expect(await nativeCodeOf(call())).toBe(code);
    expect([engine.sequenceLength(a), engine.sequenceLength(b)]).toEqual([0, 0]);
    [a, b, ...many].forEach((seq) => engine.releaseSequence(seq));
  });
});
