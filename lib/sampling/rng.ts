/**
 * xoshiro256** (Blackman & Vigna) seeded through SplitMix64: a small, well-tested generator whose output is
 * defined bit for bit, so a seed reproduces the same tokens on every run, platform and device.
 */
import { randomBytes } from 'node:crypto';
import { FlashMptError } from '../errors';

const MASK64 = (1n << 64n) - 1n;
const TWO_POW_32 = 2 ** 32;

/** The SplitMix64 sequence; spreads one seed over xoshiro's 256-bit state. */
export function* splitMix64(seed: bigint): Generator<bigint, never> {
  let state = BigInt.asUintN(64, seed);
  for (;;) {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    yield z ^ (z >> 31n);
  }
}

/**
 * The 64-bit state words live as 32-bit halves (hi, lo) in plain numbers: BigInt arithmetic allocates on every
 * operation and is an order of magnitude slower.
 */
export class SeededRng {
  private readonly state = new Uint32Array(8); // s0.hi, s0.lo, s1.hi, s1.lo, s2.hi, s2.lo, s3.hi, s3.lo
  private outHi = 0;
  private outLo = 0;

  /** Any integer seed; negative ones and bigints are taken modulo 2^64. */
  constructor(seed: number | bigint) {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
      throw new FlashMptError('E_INVALID_ARGUMENT', `seed must be a safe integer, got ${seed}`);
    }
    const words = splitMix64(BigInt(seed));
    for (let i = 0; i < 4; i++) {
      const word = words.next().value;
      this.state[2 * i] = Number(word >> 32n);
      this.state[2 * i + 1] = Number(word & 0xffffffffn);
    }
  }

  /** A seed from the OS's random source, for callers that gave none. */
  static randomSeed(): bigint {
    return randomBytes(8).readBigUInt64LE();
  }

  nextUint64(): bigint {
    this.step();
    return (BigInt(this.outHi) << 32n) | BigInt(this.outLo);
  }

  /** Uniform in [0, 1) from the top 53 bits of the next output. */
  nextFloat(): number {
    this.step();
    return (this.outHi * 2 ** 21 + (this.outLo >>> 11)) / 2 ** 53;
  }

  /** One xoshiro256** step: output rotl(s1 · 5, 7) · 9, then the linear state update. */
  private step(): void {
    const s = this.state;
    const s1hi = s[2];
    const s1lo = s[3];
    // s1 · 5 (mod 2^64): the low half's product carries into the high half (`>>> 0` truncates, without a global
    // lookup of Math, which is slow inside vm contexts such as jest's).
    let lo = s1lo * 5;
    let hi = (s1hi * 5 + ((lo / TWO_POW_32) >>> 0)) >>> 0;
    lo >>>= 0;
    // rotl 7
    const rotHi = ((hi << 7) | (lo >>> 25)) >>> 0;
    const rotLo = ((lo << 7) | (hi >>> 25)) >>> 0;
    // · 9
    lo = rotLo * 9;
    hi = (rotHi * 9 + ((lo / TWO_POW_32) >>> 0)) >>> 0;
    this.outHi = hi;
    this.outLo = lo >>> 0;

    // t = s1 << 17
    const tHi = (s1hi << 17) | (s1lo >>> 15);
    const tLo = s1lo << 17;
    s[4] ^= s[0]; // s2 ^= s0
    s[5] ^= s[1];
    s[6] ^= s1hi; // s3 ^= s1
    s[7] ^= s1lo;
    s[2] ^= s[4]; // s1 ^= s2
    s[3] ^= s[5];
    s[0] ^= s[6]; // s0 ^= s3
    s[1] ^= s[7];
    s[4] ^= tHi; // s2 ^= t
    s[5] ^= tLo;
    // s3 = rotl(s3, 45): swap the halves, then rotate by 13.
    const s3hi = s[6];
    const s3lo = s[7];
    s[6] = (s3lo << 13) | (s3hi >>> 19);
    s[7] = (s3hi << 13) | (s3lo >>> 19);
  }
}

/** SeededRng as a plain `() => [0, 1)` function, for benchmarks and tests that draw reproducible data. */
export function seededRandom(seed: number): () => number {
  const rng = new SeededRng(seed);
  return () => rng.nextFloat();
}
