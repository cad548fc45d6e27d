/**
 * xoshiro256** (Blackman & Vigna) seeded through SplitMix64: a small, well-tested generator whose output is
 * defined bit for bit, so a seed reproduces the same tokens on every run, platform and device.
 */
import { randomBytes } from 'node:crypto';
import { FlashMptError } from '../errors';

const MASK64 = (1n << 64n) - 1n;

function rotl64(x: bigint, k: bigint): bigint {
  return ((x << k) | (x >> (64n - k))) & MASK64;
}

/** The SplitMix64 sequence; used to spread one seed over xoshiro's 256-bit state. */
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

export class SeededRng {
  private s0: bigint;
  private s1: bigint;
  private s2: bigint;
  private s3: bigint;

  /** Any integer seed; negative ones and bigints are taken modulo 2^64. */
  constructor(seed: number | bigint) {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
      throw new FlashMptError('E_INVALID_ARGUMENT', `seed must be a safe integer, got ${seed}`);
    }
    const words = splitMix64(BigInt(seed));
    this.s0 = words.next().value;
    this.s1 = words.next().value;
    this.s2 = words.next().value;
    this.s3 = words.next().value;
  }

  /** A seed from the OS's random source, for callers that gave none. */
  static randomSeed(): bigint {
    return randomBytes(8).readBigUInt64LE();
  }

  nextUint64(): bigint {
    const result = (rotl64((this.s1 * 5n) & MASK64, 7n) * 9n) & MASK64;
    const t = (this.s1 << 17n) & MASK64;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl64(this.s3, 45n);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits (every double of the form k / 2^53). */
  nextFloat(): number {
    return Number(this.nextUint64() >> 11n) / 2 ** 53;
  }
}
