/** Seeded mutation fuzzing shared by the loader fuzz suites (test/fuzz-*.test.ts). */
import { FlashMptError } from '../../lib/errors';
import { seededRandom } from '../../lib/sampling/rng';

/** Seeded [0, 1) draws: the seed makes a failing mutation reproducible. */
export const rng = seededRandom;

export class Fuzzer {
  constructor(readonly random: () => number) {}

  int(below: number): number {
    return Math.floor(this.random() * below);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** Values chosen to hit boundaries: zero, negatives, fractions, 32/53/64-bit edges, wrong types. */
  jsonValue(depth = 0): unknown {
    const scalars = [0, 1, -1, 2, 3, 0.5, -0.5, 1e-5, 255, 256, 65535, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, -(2 ** 53), 1e308, NaN, Infinity, '', 'x', 'F32', 'BF16', 'F64', 'mpt', 'mosaic_gpt', 'inv_sqrt_d_model', true, false, null, undefined];
    const roll = this.int(10);
    if (depth < 2 && roll === 0) return Array.from({ length: this.int(4) }, () => this.jsonValue(depth + 1));
    if (depth < 2 && roll === 1) return Object.fromEntries(Array.from({ length: this.int(3) }, () => [this.pick(['a', 'dtype', 'shape', '__proto__', 'qk_ln']), this.jsonValue(depth + 1)]));
    if (roll === 2) return this.int(1 << 20) - (1 << 19);
    return this.pick(scalars);
  }

  /** Replaces, deletes or adds one field somewhere in a JSON object tree (on a deep copy). */
  mutateJson(value: unknown): unknown {
    const copy = structuredClone(value) as Record<string, unknown>;
    let node: Record<string, unknown> = copy;
    for (;;) {
      const keys = Object.keys(node);
      const key = keys.length > 0 ? this.pick(keys) : 'extra';
      const child = node[key];
      if (typeof child === 'object' && child !== null && this.random() < 0.6) {
        node = child as Record<string, unknown>;
        continue;
      }
      const action = this.int(4);
      if (action === 0) delete node[key];
      else if (action === 1) node[`k${this.int(5)}`] = this.jsonValue();
      else node[key] = this.jsonValue();
      return copy;
    }
  }

  mutateBytes(input: Uint8Array): Uint8Array {
    const bytes = Array.from(input);
    const rounds = 1 + this.int(4);
    for (let r = 0; r < rounds; r++) {
      const at = this.int(bytes.length + 1);
      switch (this.int(7)) {
        case 0:
          if (at < bytes.length) bytes[at] ^= 1 << this.int(8);
          break;
        case 1:
          if (at < bytes.length) bytes[at] = this.pick([0, 1, 0x7f, 0x80, 0xff, this.int(256)]);
          break;
        case 2:
          bytes.splice(at, 0, ...Array.from({ length: 1 + this.int(8) }, () => this.int(256)));
          break;
        case 3:
          bytes.splice(at, 1 + this.int(16));
          break;
        case 4:
          bytes.length = Math.min(bytes.length, at);
          break;
        case 5: {
          const from = this.int(bytes.length + 1);
          bytes.splice(at, 0, ...bytes.slice(from, from + 1 + this.int(32)));
          break;
        }
        default:
          for (let i = 0; i < 8 && at + i < bytes.length; i++) bytes[at + i] = this.pick([0, 0xff, this.int(256)]);
      }
    }
    return Uint8Array.from(bytes);
  }
}

export interface Outcome {
  accepted: number;
  rejected: Map<string, number>;
  escaped: string[];
}

/** Runs `parse` on `count` inputs; anything but success or a FlashMptError is recorded as an escape. */
export function fuzz<T>(count: number, makeInput: () => T, parse: (input: T) => void, describeInput: (input: T) => string): Outcome {
  const outcome: Outcome = { accepted: 0, rejected: new Map(), escaped: [] };
  for (let i = 0; i < count; i++) {
    const input = makeInput();
    try {
      parse(input);
      outcome.accepted++;
    } catch (err) {
      if (err instanceof FlashMptError) {
        outcome.rejected.set(err.code, (outcome.rejected.get(err.code) ?? 0) + 1);
      } else if (outcome.escaped.length < 5) {
        outcome.escaped.push(`${String(err)} on ${describeInput(input)}`);
      } else {
        outcome.escaped.push('…');
      }
    }
  }
  return outcome;
}

export const hexOf = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex').slice(0, 400);
