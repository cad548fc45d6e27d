import { FlashMptError } from '../lib/errors';
import { GenerateOptionsSchema, parseGenerateOptions } from '../lib/sampling';

function errorOf(fn: () => unknown): FlashMptError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FlashMptError) return err;
    throw err;
  }
  throw new Error('expected a FlashMptError');
}

describe('parseGenerateOptions', () => {
  test('fills the documented defaults', () => {
    const opts = parseGenerateOptions(undefined);
    expect(opts).toEqual({
      maxTokens: 16,
      temperature: 1,
      topK: 0,
      topP: 1,
      minP: 0,
      repetitionPenalty: 1,
      presencePenalty: 0,
      frequencyPenalty: 0,
      logitBias: new Map(),
      stop: [],
      stopTokenIds: [],
      ignoreEos: false,
      truncate: 'none',
    });
    expect(parseGenerateOptions({})).toEqual(opts);
  });

  test('normalizes stop to an array and logit bias keys to numeric ids', () => {
    const signal = new AbortController().signal;
    const opts = parseGenerateOptions({
      stop: '\n\n',
      logitBias: { 50256: -100, '7': 2.5 },
      seed: -3,
      signal,
      maxContext: 4096,
      truncate: 'left',
    });
    expect(opts.stop).toEqual(['\n\n']);
    expect([...opts.logitBias]).toEqual([
      [7, 2.5],
      [50256, -100],
    ]);
    expect(opts.seed).toBe(-3);
    expect(opts.signal).toBe(signal);
    expect(parseGenerateOptions({ stop: ['a', 'b'] }).stop).toEqual(['a', 'b']);
  });

  test('one E_INVALID_ARGUMENT error lists every bad field', () => {
    const err = errorOf(() =>
      parseGenerateOptions({
        maxTokens: 0,
        temperature: -0.5,
        topK: 1.5,
        topP: 0,
        minP: 1,
        repetitionPenalty: 0,
        presencePenalty: 3,
        frequencyPenalty: -2.5,
        logitBias: { abc: 1, 12: 101 },
        seed: 0.5,
        stop: ['ok', ''],
        stopTokenIds: [-1],
        ignoreEos: 'yes',
        signal: {},
        maxContext: 0,
        truncate: 'right',
        top_p: 0.9,
      }),
    );
    expect(err.code).toBe('E_INVALID_ARGUMENT');
    const fields = [
      'maxTokens',
      'temperature',
      'topK',
      'topP',
      'minP',
      'repetitionPenalty',
      'presencePenalty',
      'frequencyPenalty',
      'logitBias.abc',
      'logitBias.12',
      'seed',
      'stop.1',
      'stopTokenIds.0',
      'ignoreEos',
      'signal',
      'maxContext',
      'truncate',
    ];
    for (const field of fields) expect(err.message).toContain(`${field}: `);
    expect(err.message).toContain('top_p');
    const issues = err.details as { path: PropertyKey[] }[];
    expect(issues.map((issue) => issue.path.join('.')).sort()).toEqual([...fields, ''].sort());
  });

  test('stop allows at most 16 non-empty strings', () => {
    expect(parseGenerateOptions({ stop: Array(16).fill('x') }).stop).toHaveLength(16);
    expect(errorOf(() => parseGenerateOptions({ stop: Array(17).fill('x') })).message).toMatch(/^invalid generation options: stop: /);
    expect(errorOf(() => parseGenerateOptions({ stop: 42 })).message).toContain('stop: expected a string or an array of strings');
  });

  test('a non-object is rejected with a typed error', () => {
    expect(errorOf(() => parseGenerateOptions(5)).code).toBe('E_INVALID_ARGUMENT');
  });

  test('the schema is usable directly and keeps its input type loose', () => {
    expect(GenerateOptionsSchema.safeParse({ temperature: 0 }).success).toBe(true);
  });
});
