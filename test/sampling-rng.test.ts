import { SeededRng } from '../lib/sampling';
import { splitMix64 } from '../lib/sampling/rng';

describe('SeededRng', () => {
  test('SplitMix64 matches its published reference outputs for seed 0', () => {
    const words = splitMix64(0n);
    expect([words.next().value, words.next().value, words.next().value]).toEqual([
      0xe220a8397b1dcdafn,
      0x6e789e6aa1b965f4n,
      0x06c45d188009454fn,
    ]);
  });

  test('xoshiro256** seeded through SplitMix64 matches an independent implementation', () => {
    const rng = new SeededRng(42);
    expect([rng.nextUint64(), rng.nextUint64(), rng.nextUint64(), rng.nextUint64()]).toEqual([
      0x15780b2e0c2ec716n,
      0x6104d9866d113a7en,
      0xae17533239e499a1n,
      0xecb8ad4703b360a1n,
    ]);
  });

  test('the same seed gives the same stream; other seeds differ', () => {
    const a = new SeededRng(7);
    const b = new SeededRng(7n);
    const c = new SeededRng(8);
    const streamA = Array.from({ length: 100 }, () => a.nextFloat());
    expect(Array.from({ length: 100 }, () => b.nextFloat())).toEqual(streamA);
    expect(Array.from({ length: 100 }, () => c.nextFloat())).not.toEqual(streamA);
  });

  test('nextFloat is the top 53 bits of the 64-bit output', () => {
    const a = new SeededRng(5);
    const b = new SeededRng(5);
    for (let i = 0; i < 1000; i++) expect(a.nextFloat()).toBe(Number(b.nextUint64() >> 11n) / 2 ** 53);
  });

  test('negative seeds are taken modulo 2^64', () => {
    expect(new SeededRng(-1).nextUint64()).toBe(new SeededRng(2n ** 64n - 1n).nextUint64());
  });

  test('nextFloat is uniform on [0, 1)', () => {
    const rng = new SeededRng(3);
    const buckets = new Array<number>(10).fill(0);
    const draws = 100_000;
    let outside = 0;
    for (let i = 0; i < draws; i++) {
      const x = rng.nextFloat();
      if (x < 0 || x >= 1) outside++;
      else buckets[Math.floor(x * 10)]++;
    }
    expect(outside).toBe(0);
    for (const count of buckets) expect(Math.abs(count / draws - 0.1)).toBeLessThan(0.005);
  });

  test('rejects a seed that is not a safe integer', () => {
    expect(() => new SeededRng(1.5)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});
