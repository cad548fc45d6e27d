/**
 * The benchmark drivers behind `flash-mpt bench` on the CPU backend: their tables are made of what actually ran
 * (token counts add up, every requested round is there), whatever the speed of the machine.
 */
import { formatEngineBench, runEngineBench } from '../lib/bench/engine';
import { formatServingBench, runServingBench } from '../lib/bench/serving';

describe('flash-mpt bench drivers (CPU)', () => {
  test('serving: each concurrency generates concurrency × new tokens, sampled from candidates or full rows or picked on the device', async () => {
    const r = await runServingBench({ device: 'cpu', dtype: 'bf16', concurrencies: [1, 3], promptTokens: 8, newTokens: 6 });
    expect(r.rows.map((row) => row.concurrency)).toEqual([1, 3]);
    for (const row of r.rows) {
      expect(row.outputTokensPerSecond * row.seconds).toBeCloseTo(row.concurrency * 6, 6);
      // Greedy: the first token of each sequence comes from its prompt's candidates, the rest from candidates or, once
      // every sequence decodes, from greedy chains on the device; no full row crosses over.
      expect(row.sampledFromFullRow).toBe(0);
      expect(row.sampledFromCandidates + row.pickedOnDevice).toBe(row.concurrency * 6);
      expect(row.sampledFromCandidates).toBeGreaterThanOrEqual(row.concurrency);
      expect(row.pickedOnDevice).toBeGreaterThan(0);
      expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(row.modelTokensPerSecond).toBeUndefined();
      // The scheduler awaits one engine call at a time: its prefill and decode time fit inside the round.
      expect(row.prefillSeconds).toBeGreaterThan(0);
      expect(row.decodeSeconds).toBeGreaterThan(0);
      expect(row.prefillSeconds + row.decodeSeconds).toBeLessThanOrEqual(row.seconds + 1e-3);
      // Every stream's first token comes after its prefill and within the round.
      expect(row.firstTokenMs.median).toBeGreaterThan(0);
      expect(row.firstTokenMs.median).toBeLessThanOrEqual(row.firstTokenMs.max);
      expect(row.firstTokenMs.max).toBeLessThanOrEqual(row.seconds * 1000);
    }
    expect(formatServingBench(r)).toContain('| 3 |');
  }, 120_000);

  test('engine: prefill rows for the requested lengths, a decode figure and the stream() ratio', async () => {
    const r = await runEngineBench({ device: 'cpu', dtype: 'bf16', prefillLengths: [8, 16], decodeTokens: 4, promptTokens: 4 });
    expect(r.prefill.map((p) => p.tokens)).toEqual([8, 16]);
    for (const p of r.prefill) expect(p.tokensPerSecond).toBeCloseTo((p.tokens * 1000) / p.ms, 6);
    expect(r.decode).toMatchObject({ promptTokens: 4, newTokens: 4 });
    expect(r.decode.msPerTokenPerCall).toBeGreaterThan(0);
    expect(r.streamApi.ratioToNativeLoop).toBeGreaterThan(0);
    expect(r.ceilings).toBeUndefined();
    expect(formatEngineBench(r)).toContain('| 16 |');
  }, 120_000);
});
