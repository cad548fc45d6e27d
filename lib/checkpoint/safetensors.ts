/**
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then the data, with offsets
 * relative to the data start (8 + N). Only the header is read; the data stays on disk for the native side.
 */
import * as fs from 'node:fs/promises';
import { FlashMptError } from '../errors';
import type { SourceTensor } from './index';
import { fileError, readAt } from './read-at';

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** byte range relative to the start of the data section */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** absolute file offset of the data section: 8 + header length */
  dataStart: number;
  tensors: SafetensorsTensor[];
  metadata: Record<string, unknown>;
}

/** Every dtype the format defines, so sizes can be checked even for tensors the engine will not use. */
const ITEM_SIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

export function safetensorsItemSize(dtype: string): number | undefined {
  return Object.hasOwn(ITEM_SIZE, dtype) ? ITEM_SIZE[dtype] : undefined;
}

/** The reference implementation's cap; it also bounds what a hostile length can make us allocate. */
export const MAX_HEADER_BYTES = 100_000_000;

function headerError(source: string, message: string): FlashMptError {
  return new FlashMptError('E_CHECKPOINT', `${source}: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** prod(shape) × itemSize, or Infinity once it leaves the exactly representable range. */
function byteSize(shape: number[], itemSize: number): number {
  let size = itemSize;
  for (const dim of shape) {
    size *= dim;
    if (size > Number.MAX_SAFE_INTEGER) return Infinity;
  }
  return size;
}

function parseEntry(name: string, entry: unknown, dataSize: number, source: string): SafetensorsTensor {
  const where = `tensor ${JSON.stringify(name)}`;
  if (!isRecord(entry)) throw headerError(source, `${where}: expected an object with dtype, shape and data_offsets`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string') throw headerError(source, `${where}: dtype must be a string`);
  const itemSize = safetensorsItemSize(dtype);
  if (itemSize === undefined) {
    throw headerError(source, `${where}: unknown dtype ${JSON.stringify(dtype)} (supported: F32, F16, BF16)`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw headerError(source, `${where}: shape must be an array of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw headerError(source, `${where}: data_offsets must be [begin, end] non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataSize) {
    throw headerError(source, `${where}: data_offsets [${begin}, ${end}] out of range (data section is ${dataSize} bytes)`);
  }
  const expected = byteSize(shape, itemSize);
  if (expected === Infinity) throw headerError(source, `${where}: shape [${shape.join(', ')}] is too large`);
  if (end - begin !== expected) {
    throw headerError(
      source,
      `${where}: data_offsets span ${end - begin} bytes but shape [${shape.join(', ')}] × ${dtype} (${itemSize} B) needs ${expected}`,
    );
  }
  return { name, dtype, shape: shape.slice(), begin, end };
}

/** Checks the 8-byte length prefix against the file size and the cap; returns the header length N. */
function checkedHeaderLength(buf: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8 || buf.length < 8) {
    throw headerError(source, `truncated: ${Math.min(fileSize, buf.length)} bytes, shorter than the 8-byte header length`);
  }
  const headerLength = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(fileSize - 8)) {
    throw headerError(source, `header length ${headerLength} runs past the end of the file (${fileSize} bytes)`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw headerError(source, `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  return Number(headerLength);
}

/**
 * Parses a header from `buf`, which holds at least the first 8 + N bytes of a file of `fileSize` bytes.
 * Pure (no I/O) so it can be fuzzed; every failure is a FlashMptError E_CHECKPOINT.
 */
export function parseSafetensorsHeader(buf: Uint8Array, fileSize: number, source = 'safetensors file'): SafetensorsHeader {
  const dataStart = 8 + checkedHeaderLength(buf, fileSize, source);
  if (buf.length < dataStart) {
    throw headerError(source, `truncated: header needs ${dataStart} bytes, only ${buf.length} available`);
  }

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, dataStart)));
  } catch (err) {
    throw new FlashMptError('E_CHECKPOINT', `${source}: header is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isRecord(json)) throw headerError(source, 'header must be a JSON object');

  const dataSize = fileSize - dataStart;
  let metadata: Record<string, unknown> = {};
  const tensors: SafetensorsTensor[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isRecord(entry)) throw headerError(source, '__metadata__ must be an object');
      metadata = entry;
    } else {
      tensors.push(parseEntry(name, entry, dataSize, source));
    }
  }

  const byStart = tensors.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byStart.length; i++) {
    const [previous, current] = [byStart[i - 1], byStart[i]];
    if (current.begin < previous.end) {
      throw headerError(
        source,
        `tensors ${JSON.stringify(previous.name)} [${previous.begin}, ${previous.end}] and ` +
          `${JSON.stringify(current.name)} [${current.begin}, ${current.end}] overlap`,
      );
    }
  }
  return { dataStart, tensors, metadata };
}

/** Reads only the header of a .safetensors file and places each tensor at its absolute file offset. */
export async function readSafetensors(file: string): Promise<SourceTensor[]> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const { size } = await handle.stat();
    const lengthBytes = await readAt(handle, 0, Math.min(8, size), file, 'header length');
    // Validate the length before allocating for it: a hostile length must not drive a huge read.
    const headerLength = checkedHeaderLength(lengthBytes, size, file);
    const head = await readAt(handle, 0, 8 + headerLength, file, 'header');
    const header = parseSafetensorsHeader(head, size, file);
    return header.tensors.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      file,
      offset: header.dataStart + t.begin,
      bytes: t.end - t.begin,
    }));
  } catch (err) {
    throw fileError(file, err);
  } finally {
    await handle?.close();
  }
}
