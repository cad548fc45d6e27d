/**
 * Seeded fuzzing of the pure loader parsers: mutated safetensors headers, pickles and configs must either
 * parse (and then satisfy the parser's guarantees) or throw a FlashMptError; nothing else may escape.
 */
import { parseSafetensorsHeader } from '../lib/checkpoint/safetensors';
import { readPickle } from '../lib/checkpoint/pickle';
import { parseConfig } from '../lib/config';
import {
  configJson,
  contiguousStride,
  modelTensors,
  PickleBuilder,
  rawSafetensors,
  safetensorsBytes,
  stateDictPickle,
  tensor,
  TINY,
} from './helpers/checkpoint-writers';
import { Fuzzer, fuzz, hexOf, rng } from './helpers/fuzz';

const CASES_PER_PARSER = 12_000;

describe('fuzzing the loaders (seeded)', () => {
  it(`safetensors header parser: ${CASES_PER_PARSER} mutated headers, only FlashMptError`, () => {
    const f = new Fuzzer(rng(0x5afe));
    const headerOf = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true)))));
    const seeds = [
      // a small model keeps the data short, so mutations land in the header
      safetensorsBytes(modelTensors({ ...TINY, dModel: 4, vocabSize: 3, ratio: 1 }, 'mpt', 'BF16')),
      safetensorsBytes({ a: tensor('F32', [2, 2], [1, 2, 3, 4]), b: tensor('F16', [0], []), c: tensor('BF16', [], [1]) }, { format: 'pt', note: 'x' }),
    ];
    const structural = seeds.map((bytes) => ({ header: headerOf(bytes), data: bytes.subarray(8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) }));
    const outcome = fuzz(
      CASES_PER_PARSER,
      () => {
        const bytes =
          f.random() < 0.5
            ? f.mutateBytes(f.pick(seeds))
            : (() => {
                const { header, data } = f.pick(structural);
                return rawSafetensors(f.mutateJson(header), data.subarray(0, f.random() < 0.8 ? data.length : f.int(data.length + 1)));
              })();
        return { bytes, fileSize: f.random() < 0.9 ? bytes.length : bytes.length + f.int(64) };
      },
      ({ bytes, fileSize }) => {
        const header = parseSafetensorsHeader(bytes, fileSize);
        // what an accepted header promises: in range, sized by shape, no overlaps
        const dataSize = fileSize - header.dataStart;
        const spans = header.tensors.map((t) => [t.begin, t.end]).sort((a, b) => a[0] - b[0]);
        for (const [i, [begin, end]] of spans.entries()) {
          if (!(begin <= end && end <= dataSize)) throw new Error(`accepted out-of-range span [${begin}, ${end}]`);
          if (i > 0 && begin < spans[i - 1][1] && begin < end) throw new Error('accepted overlapping spans');
        }
      },
      ({ bytes }) => hexOf(bytes),
    );
    expect(outcome.escaped).toEqual([]);
    expect(outcome.accepted).toBeGreaterThan(0);
    expect(outcome.rejected.get('E_CHECKPOINT')).toBeGreaterThan(CASES_PER_PARSER / 4);
  });

  it(`pickle reader: ${CASES_PER_PARSER} mutated pickles, only FlashMptError`, () => {
    const f = new Fuzzer(rng(0x9c1e));
    const tensors = [
      { name: 'w', storageType: 'FloatStorage', storageKey: '0', storageNumel: 12, storageOffset: 0, shape: [3, 4], stride: [4, 1] },
      { name: 'b', storageType: 'BFloat16Storage', storageKey: '1', storageNumel: 9, storageOffset: 1, shape: [8], stride: contiguousStride([8]), asParameter: true },
    ];
    const seeds = [
      stateDictPickle(tensors),
      new PickleBuilder().proto(4).mark().string('a').int(-5).string('b').emptyList().int(70000).append().raw(0x64).stop().bytes(),
      new PickleBuilder().proto().global('os', 'system').string('touch /nonexistent/x').tuple1().reduce().stop().bytes(),
    ];
    // opcodes with random operands spliced in, so every opcode handler sees hostile arguments
    const opcodes = [0x80, 0x95, 0x2e, 0x28, 0x7d, 0x64, 0x5d, 0x6c, 0x29, 0x74, 0x85, 0x86, 0x87, 0x58, 0x8c, 0x8d, 0x43, 0x42, 0x8e, 0x4a, 0x4b, 0x4d, 0x8a, 0x8b, 0x47, 0x88, 0x89, 0x4e, 0x71, 0x72, 0x94, 0x68, 0x6a, 0x30, 0x31, 0x32, 0x63, 0x93, 0x52, 0x51, 0x73, 0x75, 0x61, 0x65, 0x62, 0x81, 0x69];
    const outcome = fuzz(
      CASES_PER_PARSER,
      () => {
        const bytes = f.mutateBytes(f.pick(seeds));
        if (f.random() < 0.5) return bytes;
        const at = f.int(bytes.length + 1);
        const spliced = [f.pick(opcodes), ...Array.from({ length: f.int(9) }, () => f.int(256))];
        return Uint8Array.from([...bytes.subarray(0, at), ...spliced, ...bytes.subarray(at)]);
      },
      (bytes) => readPickle(bytes),
      hexOf,
    );
    expect(outcome.escaped).toEqual([]);
    expect(outcome.rejected.get('E_CHECKPOINT')).toBeGreaterThan(0);
    expect(outcome.rejected.get('E_UNSAFE_PICKLE')).toBeGreaterThan(0);
  });

  it(`config parser: ${CASES_PER_PARSER} mutated configs, only FlashMptError`, () => {
    const f = new Fuzzer(rng(0xc0f1));
    const seeds = [configJson(TINY, 'mpt'), configJson({ ...TINY, nHeads: 4, noBias: false }, 'mosaic_gpt'), { ...configJson(TINY, 'mpt'), attn_config: { alibi: true, clip_qkv: 8, softmax_scale: null }, logit_scale: 'inv_sqrt_d_model' }];
    const outcome = fuzz(
      CASES_PER_PARSER,
      () => {
        if (f.random() < 0.8) {
          let json: unknown = f.pick(seeds);
          for (let r = 1 + f.int(3); r > 0; r--) json = f.mutateJson(json);
          return json;
        }
        // text-level damage that still parses as JSON (unparseable text is loadConfig's job and never reaches here)
        const text = new TextEncoder().encode(JSON.stringify(f.pick(seeds)));
        try {
          return JSON.parse(new TextDecoder().decode(f.mutateBytes(text)));
        } catch {
          return f.jsonValue();
        }
      },
      (json) => {
        const c = parseConfig(json);
        if (c.dModel % c.nHeads !== 0 || !Number.isInteger(c.headDim) || c.dFf < 1) throw new Error('accepted inconsistent dimensions');
        if (c.alibiSlopes.length !== (c.alibi ? c.nHeads : 0) || !c.alibiSlopes.every((s) => s >= 0 && s <= 1)) throw new Error('bad ALiBi slopes');
        if (!(c.softmaxScale > 0) || !(c.logitScale > 0)) throw new Error('non-positive scale');
      },
      (json) => JSON.stringify(json)?.slice(0, 400) ?? String(json),
    );
    expect(outcome.escaped).toEqual([]);
    expect(outcome.accepted).toBeGreaterThan(0);
    expect(outcome.rejected.get('E_CONFIG')).toBeGreaterThan(CASES_PER_PARSER / 4);
  });
});
