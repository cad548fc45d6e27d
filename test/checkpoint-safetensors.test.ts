import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, readSafetensors } from '../lib/checkpoint/safetensors';
import { FlashMptError } from '../lib/errors';
import { makeTempDir, rawSafetensors, safetensorsBytes, tensor } from './helpers/checkpoint-writers';

function parseError(bytes: Uint8Array, fileSize = bytes.length): FlashMptError {
  try {
    parseSafetensorsHeader(bytes, fileSize, 'model.safetensors');
  } catch (err) {
    expect(err).toBeInstanceOf(FlashMptError);
    expect((err as FlashMptError).code).toBe('E_CHECKPOINT');
    return err as FlashMptError;
  }
  throw new Error('the header was accepted');
}

const f32 = (shape: number[], begin: number) => ({ dtype: 'F32', shape, data_offsets: [begin, begin + 4 * shape.reduce((a, b) => a * b, 1)] });

describe('parseSafetensorsHeader', () => {
  it('places tensors after the header and keeps __metadata__', () => {
    const bytes = safetensorsBytes({ a: tensor('F32', [2, 3], [1, 2, 3, 4, 5, 6]), b: tensor('BF16', [4], [1, 2, 3, 4]) }, { format: 'pt' });
    const header = parseSafetensorsHeader(bytes, bytes.length);
    expect(header.metadata).toEqual({ format: 'pt' });
    expect(header.dataStart).toBe(bytes.length - 24 - 8);
    expect(header.tensors).toEqual([
      { name: 'a', dtype: 'F32', shape: [2, 3], begin: 0, end: 24 },
      { name: 'b', dtype: 'BF16', shape: [4], begin: 24, end: 32 },
    ]);
  });

  it('accepts zero-sized and scalar tensors', () => {
    const bytes = rawSafetensors({ empty: { dtype: 'F16', shape: [0, 4], data_offsets: [0, 0] }, scalar: f32([], 0) }, new Uint8Array(4));
    expect(parseSafetensorsHeader(bytes, bytes.length).tensors.map((t) => t.end - t.begin)).toEqual([0, 4]);
  });

  it('refuses a file shorter than 8 bytes', () => {
    expect(parseError(new Uint8Array(5)).message).toBe('model.safetensors: truncated: 5 bytes, shorter than the 8-byte header length');
  });

  it('refuses a header length past the end of the file', () => {
    const bytes = rawSafetensors({ a: f32([1], 0) }, new Uint8Array(4));
    new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.length), true);
    expect(parseError(bytes).message).toContain(`header length ${bytes.length} runs past the end of the file (${bytes.length} bytes)`);
    new DataView(bytes.buffer).setBigUint64(0, 0xffffffffffffffffn, true);
    expect(parseError(bytes).message).toContain('header length 18446744073709551615 runs past the end');
  });

  it('refuses a header over the size limit before reading it', () => {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
    expect(parseError(bytes, MAX_HEADER_BYTES * 2).message).toContain('exceeds the 100000000-byte limit');
  });

  it.each([
    ['bad JSON', '{"a": {', 'header is not valid JSON'],
    ['an array', '[1, 2]', 'header must be a JSON object'],
    ['bad UTF-8', new Uint8Array([0x7b, 0xff, 0x7d]), 'header is not valid JSON'],
  ])('refuses a header that is %s', (_, header, message) => {
    const bytes =
      header instanceof Uint8Array
        ? Uint8Array.from([...new Uint8Array(new BigUint64Array([BigInt(header.length)]).buffer), ...header])
        : rawSafetensors(header);
    expect(parseError(bytes).message).toContain(message);
  });

  it('names an unknown dtype', () => {
    const bytes = rawSafetensors({ w: { dtype: 'Q4_K', shape: [2], data_offsets: [0, 1] } }, new Uint8Array(1));
    expect(parseError(bytes).message).toBe('model.safetensors: tensor "w": unknown dtype "Q4_K" (supported: F32, F16, BF16)');
  });

  it.each([
    ['end beyond the data', { w: f32([4], 0) }, 8, 'tensor "w": data_offsets [0, 16] out of range (data section is 8 bytes)'],
    ['begin after end', { w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 16, 'tensor "w": data_offsets [8, 4] out of range'],
    ['negative offset', { w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 16, 'data_offsets must be [begin, end] non-negative integers'],
    ['fractional offset', { w: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4.5] } }, 16, 'data_offsets must be [begin, end]'],
    ['three offsets', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, 16, 'data_offsets must be [begin, end]'],
    ['bad shape', { w: { dtype: 'F32', shape: [2, -2], data_offsets: [0, 16] } }, 16, 'tensor "w": shape must be an array of non-negative integers'],
    ['no dtype', { w: { shape: [1], data_offsets: [0, 4] } }, 16, 'tensor "w": dtype must be a string'],
    ['entry not an object', { w: 3 }, 16, 'tensor "w": expected an object'],
    ['metadata not an object', { __metadata__: 'pt' }, 0, '__metadata__ must be an object'],
  ])('refuses %s', (_, header, dataSize, message) => {
    expect(parseError(rawSafetensors(header, new Uint8Array(dataSize))).message).toContain(message);
  });

  it('refuses a byte count that does not match shape × item size, saying both', () => {
    const bytes = rawSafetensors({ w: { dtype: 'BF16', shape: [3, 4], data_offsets: [0, 48] } }, new Uint8Array(48));
    expect(parseError(bytes).message).toContain('tensor "w": data_offsets span 48 bytes but shape [3, 4] × BF16 (2 B) needs 24');
  });

  it('refuses a shape whose size overflows', () => {
    const bytes = rawSafetensors({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, new Uint8Array(4));
    expect(parseError(bytes).message).toContain(`tensor "w": shape [${2 ** 40}, ${2 ** 40}] is too large`);
  });

  it('names both tensors when they overlap', () => {
    const bytes = rawSafetensors({ a: f32([4], 0), b: f32([4], 8) }, new Uint8Array(24));
    expect(parseError(bytes).message).toContain('tensors "a" [0, 16] and "b" [8, 24] overlap');
  });

  it('treats a buffer shorter than the header it announces as truncated', () => {
    const bytes = rawSafetensors({ a: f32([1], 0) }, new Uint8Array(4));
    expect(parseError(bytes.subarray(0, 12), bytes.length).message).toContain('truncated: header needs');
  });
});

describe('readSafetensors', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('gives absolute offsets and names the file in errors', async () => {
    const file = path.join(dir, 'model.safetensors');
    const bytes = safetensorsBytes({ a: tensor('F32', [2], [1, 2]), b: tensor('F16', [3], [1, 2, 3]) });
    await fs.writeFile(file, bytes);
    const tensors = await readSafetensors(file);
    expect(tensors.map((t) => [t.name, t.offset, t.bytes])).toEqual([
      ['a', bytes.length - 14, 8],
      ['b', bytes.length - 6, 6],
    ]);
    await fs.writeFile(file, bytes.subarray(0, bytes.length - 1));
    await expect(readSafetensors(file)).rejects.toMatchObject({ code: 'E_CHECKPOINT', message: expect.stringContaining(`${file}: tensor "b": data_offsets [8, 14] out of range`) });
  });

  it('refuses truncated and missing files', async () => {
    const file = path.join(dir, 'model.safetensors');
    await fs.writeFile(file, new Uint8Array(3));
    await expect(readSafetensors(file)).rejects.toMatchObject({ code: 'E_CHECKPOINT', message: `${file}: truncated: 3 bytes, shorter than the 8-byte header length` });
    await expect(readSafetensors(path.join(dir, 'nope.safetensors'))).rejects.toMatchObject({ code: 'E_CHECKPOINT', message: expect.stringContaining('file not found') });
  });

  it('reads only the header: a 3 GiB sparse file indexes at once', async () => {
    const file = path.join(dir, 'big.safetensors');
    const big = 3 * 2 ** 30;
    const rows = big / 4 / 1024;
    const header = rawSafetensors({ w: { dtype: 'F32', shape: [rows, 1024], data_offsets: [0, big] } });
    await fs.writeFile(file, header);
    await fs.truncate(file, header.length + big);
    const started = Date.now();
    const [w] = await readSafetensors(file);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(w).toMatchObject({ offset: header.length, bytes: big, shape: [rows, 1024] });
  });
});
