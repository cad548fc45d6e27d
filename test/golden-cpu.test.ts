/**
 * Every case of every golden in $FLASH_MPT_TEST_DATA/golden through the public API on the CPU reference engine:
 * logits within 1e-4 of the largest |logit|, argmax per position, and the greedy continuation token for token.
 * Golden folders are discovered, not listed, so any golden made by mpt_oracle.py is checked the same way.
 */
import * as fs from 'node:fs';
import { loadConfig, loadModel, Model } from '../lib';
import { describeWithData, sharedPath } from './helpers/data';

interface GoldenCase { ids: number[]; argmax: number[]; last_logits: number[]; logits?: number[][]; greedy?: number[] }

const goldenDirs = fs.existsSync(sharedPath('golden'))
  ? fs.readdirSync(sharedPath('golden')).filter((d) => fs.existsSync(sharedPath('golden', d, 'golden.json'))).sort()
  : [];

function maxAbs(xs: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, Math.abs(xs[i]));
  return m;
}

function argmaxRows(logits: Float32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / vocab; r++) {
    let best = 0;
    for (let v = 1; v < vocab; v++) if (logits[r * vocab + v] > logits[r * vocab + best]) best = v;
    out.push(best);
  }
  return out;
}

function expectClose(actual: Float32Array, expected: number[], what: string): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  const bound = 1e-4 * maxAbs(expected);
  if (worst > bound) throw new Error(`${what}: max |Δlogit| ${worst.toExponential(3)} > ${bound.toExponential(3)}`);
}

describeWithData('CPU engine matches the goldens', 'golden', () => {
  test('at least one golden is present', () => expect(goldenDirs.length).toBeGreaterThan(0));

  describe.each(goldenDirs)('%s', (name) => {
    const golden = JSON.parse(fs.readFileSync(sharedPath('golden', name, 'golden.json'), 'utf8')) as { cases: GoldenCase[] };
    let model: Model;
    // ALiBi extrapolates: a golden may run past max_seq_len, so the KV cache covers its longest case.
    const longest = Math.max(...golden.cases.map((c) => c.ids.length + (c.greedy?.length ?? 0)));
    beforeAll(async () => {
      const { maxSeqLen } = await loadConfig(sharedPath('golden', name));
      model = await loadModel(sharedPath('golden', name), { device: 'cpu', maxContext: Math.max(maxSeqLen, longest) });
    });
    afterAll(() => model?.dispose());

    test.each(golden.cases.map((c, i) => [i, c] as const))('case %i: logits and argmax', async (i, c) => {
      const vocab = model.config.vocabSize;
      const logits = await model.logits(c.ids);
      expect(logits.length).toBe(c.ids.length * vocab);
      expectClose(logits.subarray((c.ids.length - 1) * vocab), c.last_logits, `${name} case ${i} last position`);
      c.logits?.forEach((row, p) => expectClose(logits.subarray(p * vocab, (p + 1) * vocab), row, `${name} case ${i} position ${p}`));
      expect(argmaxRows(logits, vocab)).toEqual(c.argmax);
    });

    test.each(golden.cases.filter((c) => c.greedy).map((c, i) => [i, c] as const))('case %i: greedy continuation', async (_i, c) => {
      const out = await model.generate({ ids: c.ids }, { maxTokens: c.greedy!.length, temperature: 0, ignoreEos: true });
      expect(out.tokenIds).toEqual(c.greedy);
      expect(out.finishReason).toBe('length');
    });
  });
});
