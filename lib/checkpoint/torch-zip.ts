/**
 * PyTorch zip checkpoints (`pytorch_model.bin`): a zip whose `<top>/data.pkl` pickles the state dict and whose
 * `<top>/data/<key>` entries hold each storage's raw bytes. The central directory is read from the end of the
 * file (zip64 included, as torch writes it past 4 GiB); only STORED entries are accepted so the native side can
 * map tensor bytes straight from the file.
 */
import * as fs from 'node:fs/promises';
import { FlashMptError } from '../errors';
import type { SourceTensor } from './index';
import { type PickleValue, readPickle, TorchTensor } from './pickle';
import { fileError, readAt } from './read-at';
import { safetensorsItemSize } from './safetensors';

interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE, … */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const CENTRAL_HEADER_SIZE = 46;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const LOCAL_HEADER_SIZE = 30;
const ZIP64_EXTRA_ID = 0x0001;
const MAX_COMMENT = 0xffff;
/** A state dict's pickle is kilobytes; this only stops a hostile size from driving a huge allocation. */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

function zipError(file: string, message: string): FlashMptError {
  return new FlashMptError('E_CHECKPOINT', `${file}: ${message}`);
}

function safeU64(view: DataView, at: number, file: string): number {
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw zipError(file, `zip field ${value} is out of range`);
  return Number(value);
}

interface Directory {
  entryCount: number;
  size: number;
  offset: number;
}

async function findDirectory(handle: fs.FileHandle, fileSize: number, file: string): Promise<Directory> {
  const tailLength = Math.min(fileSize, EOCD_SIZE + MAX_COMMENT + ZIP64_LOCATOR_SIZE);
  const tailStart = fileSize - tailLength;
  const tail = await readAt(handle, tailStart, tailLength, file, 'zip end record');
  const view = new DataView(tail.buffer);
  let eocd = -1;
  for (let at = tailLength - EOCD_SIZE; at >= 0; at--) {
    // The comment length must account for exactly the bytes after the record, or this is a stray signature.
    if (view.getUint32(at, true) === EOCD_SIGNATURE && at + EOCD_SIZE + view.getUint16(at + 20, true) === tailLength) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw zipError(file, 'not a zip file (no end-of-central-directory record); expected a PyTorch zip checkpoint');

  const directory = {
    entryCount: view.getUint16(eocd + 10, true),
    size: view.getUint32(eocd + 12, true),
    offset: view.getUint32(eocd + 16, true),
  };
  const needsZip64 = directory.entryCount === 0xffff || directory.size === 0xffffffff || directory.offset === 0xffffffff;
  const locator = eocd - ZIP64_LOCATOR_SIZE;
  if (!needsZip64 && !(locator >= 0 && view.getUint32(locator, true) === ZIP64_LOCATOR_SIGNATURE)) return directory;
  if (locator < 0 || view.getUint32(locator, true) !== ZIP64_LOCATOR_SIGNATURE) {
    throw zipError(file, 'zip64 end-of-central-directory locator missing');
  }
  const recordOffset = safeU64(view, locator + 8, file);
  if (recordOffset + ZIP64_EOCD_SIZE > fileSize) throw zipError(file, 'zip64 end-of-central-directory record out of range');
  const record = new DataView((await readAt(handle, recordOffset, ZIP64_EOCD_SIZE, file, 'zip64 end record')).buffer);
  if (record.getUint32(0, true) !== ZIP64_EOCD_SIGNATURE) throw zipError(file, 'bad zip64 end-of-central-directory record');
  return { entryCount: safeU64(record, 32, file), size: safeU64(record, 40, file), offset: safeU64(record, 48, file) };
}

/** Sizes and offsets that overflow 32 bits are 0xFFFFFFFF in the header and stored in the zip64 extra field. */
function applyZip64Extra(entry: ZipEntry, extra: DataView, file: string): void {
  for (let at = 0; at + 4 <= extra.byteLength; ) {
    const id = extra.getUint16(at, true);
    const length = extra.getUint16(at + 2, true);
    const end = at + 4 + length;
    if (end > extra.byteLength) throw zipError(file, `zip entry ${entry.name}: extra field overruns`);
    if (id === ZIP64_EXTRA_ID) {
      let field = at + 4;
      const next = (): number => {
        if (field + 8 > end) throw zipError(file, `zip entry ${entry.name}: short zip64 extra field`);
        const value = safeU64(extra, field, file);
        field += 8;
        return value;
      };
      if (entry.size === 0xffffffff) entry.size = next();
      if (entry.compressedSize === 0xffffffff) entry.compressedSize = next();
      if (entry.localHeaderOffset === 0xffffffff) entry.localHeaderOffset = next();
    }
    at = end;
  }
}

/** Reads the central directory: every entry's name, method, sizes and local header offset. */
async function readZipEntries(handle: fs.FileHandle, fileSize: number, file: string): Promise<Map<string, ZipEntry>> {
  const directory = await findDirectory(handle, fileSize, file);
  if (directory.offset + directory.size > fileSize) throw zipError(file, 'zip central directory out of range');
  const bytes = await readAt(handle, directory.offset, directory.size, file, 'zip central directory');
  const view = new DataView(bytes.buffer);
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < directory.entryCount; i++) {
    if (at + CENTRAL_HEADER_SIZE > bytes.length || view.getUint32(at, true) !== CENTRAL_HEADER_SIGNATURE) {
      throw zipError(file, `zip central directory entry ${i} is malformed`);
    }
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const nameStart = at + CENTRAL_HEADER_SIZE;
    const extraStart = nameStart + nameLength;
    const next = extraStart + extraLength + commentLength;
    if (next > bytes.length) throw zipError(file, `zip central directory entry ${i} overruns the directory`);
    const entry: ZipEntry = {
      name: new TextDecoder().decode(bytes.subarray(nameStart, extraStart)),
      method: view.getUint16(at + 10, true),
      compressedSize: view.getUint32(at + 20, true),
      size: view.getUint32(at + 24, true),
      localHeaderOffset: view.getUint32(at + 42, true),
    };
    applyZip64Extra(entry, new DataView(bytes.buffer, extraStart, extraLength), file);
    entries.set(entry.name, entry);
    at = next;
  }
  return entries;
}

/** Absolute offset of an entry's data: the local header's own name and extra lengths decide it. */
async function entryDataOffset(handle: fs.FileHandle, entry: ZipEntry, fileSize: number, file: string): Promise<number> {
  if (entry.method !== 0) {
    throw zipError(
      file,
      `zip entry ${entry.name} is compressed (method ${entry.method}); only uncompressed (STORED) entries are supported, as torch.save writes them`,
    );
  }
  if (entry.localHeaderOffset + LOCAL_HEADER_SIZE > fileSize) throw zipError(file, `zip entry ${entry.name}: local header out of range`);
  const header = new DataView((await readAt(handle, entry.localHeaderOffset, LOCAL_HEADER_SIZE, file, 'zip local header')).buffer);
  if (header.getUint32(0, true) !== LOCAL_HEADER_SIGNATURE) throw zipError(file, `zip entry ${entry.name}: bad local header`);
  const dataOffset = entry.localHeaderOffset + LOCAL_HEADER_SIZE + header.getUint16(26, true) + header.getUint16(28, true);
  if (dataOffset + entry.size > fileSize) throw zipError(file, `zip entry ${entry.name}: data runs past the end of the file`);
  return dataOffset;
}

/** readPickle with the failure re-labelled by where the pickle came from. */
function unpickle(bytes: Uint8Array, source: string): PickleValue {
  try {
    return readPickle(bytes);
  } catch (err) {
    if (!(err instanceof FlashMptError)) throw err;
    throw new FlashMptError(err.code, `${source}: ${err.message}`, { cause: err });
  }
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let dim = shape.length - 1; dim >= 0; dim--) {
    if (shape[dim] === 0) return true;
    // torch ignores the stride of a size-1 dimension when judging contiguity.
    if (shape[dim] !== 1 && stride[dim] !== expected) return false;
    expected *= shape[dim];
  }
  return true;
}

/** The tensors of a PyTorch zip checkpoint, located in the file; nothing but metadata is read. */
export async function readTorchZip(file: string): Promise<SourceTensor[]> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const { size: fileSize } = await handle.stat();
    const entries = await readZipEntries(handle, fileSize, file);
    const pickles = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
    if (pickles.length !== 1) {
      throw zipError(file, `expected one <folder>/data.pkl entry in a PyTorch zip checkpoint, found ${pickles.length}`);
    }
    const folder = pickles[0].slice(0, -'data.pkl'.length);
    const open = handle;
    const entryBytes = async (entry: ZipEntry, what: string) =>
      readAt(open, await entryDataOffset(open, entry, fileSize, file), entry.size, file, what);

    const byteOrder = entries.get(`${folder}byteorder`);
    if (byteOrder !== undefined) {
      const order = byteOrder.size <= 16 ? new TextDecoder().decode(await entryBytes(byteOrder, 'byteorder')) : '';
      if (order !== 'little') throw zipError(file, `byteorder ${JSON.stringify(order)} is not supported (only little-endian)`);
    }
    const pickleEntry = entries.get(pickles[0]) as ZipEntry;
    if (pickleEntry.size > MAX_PICKLE_BYTES) throw zipError(file, `${pickleEntry.name} is ${pickleEntry.size} bytes, too large for a state dict`);
    const stateDict = unpickle(await entryBytes(pickleEntry, 'data.pkl'), `${file}: ${pickleEntry.name}`);
    if (!(stateDict instanceof Map)) throw zipError(file, 'data.pkl does not hold a state dict (a dict of tensors)');

    const storageOffsets = new Map<string, number>();
    const locate = async (name: string, tensor: TorchTensor): Promise<SourceTensor> => {
      const { storage, shape, stride, storageOffset } = tensor;
      const where = `tensor ${JSON.stringify(name)}`;
      const itemSize = safetensorsItemSize(storage.dtype) as number; // every storage type has a safetensors twin
      const entryName = `${folder}data/${storage.key}`;
      const entry = entries.get(entryName);
      if (entry === undefined) throw zipError(file, `${where}: storage entry ${entryName} is missing`);
      if (!isContiguous(shape, stride)) {
        throw zipError(file, `${where} is not contiguous (shape [${shape.join(', ')}], stride [${stride.join(', ')}]); save it with .contiguous()`);
      }
      const numel = shape.reduce((a, b) => a * b, 1);
      if (storageOffset + numel > storage.numel || storage.numel * itemSize > entry.size) {
        throw zipError(
          file,
          `${where}: ${numel} elements at offset ${storageOffset} do not fit its storage ${entryName} ` +
            `(${storage.numel} elements declared, ${entry.size} bytes stored)`,
        );
      }
      let dataOffset = storageOffsets.get(entryName);
      if (dataOffset === undefined) {
        dataOffset = await entryDataOffset(open, entry, fileSize, file);
        storageOffsets.set(entryName, dataOffset);
      }
      return { name, dtype: storage.dtype, shape: [...shape], file, offset: dataOffset + storageOffset * itemSize, bytes: numel * itemSize };
    };

    const tensors: SourceTensor[] = [];
    for (const [name, value] of stateDict) {
      // Non-tensor values (and non-string keys) carry nothing the engine uses.
      if (typeof name === 'string' && value instanceof TorchTensor) tensors.push(await locate(name, value));
    }
    return tensors;
  } catch (err) {
    throw fileError(file, err);
  } finally {
    await handle?.close();
  }
}
