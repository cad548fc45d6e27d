/**
 * Writers for small checkpoints built from JS values, so tests can make valid and deliberately broken
 * safetensors files, PyTorch zip `.bin` files (pickle + zip, laid out as torch.save does) and sharded variants
 * in temporary folders. They follow the file formats independently of lib/checkpoint, which they test.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { deflateRawSync } from 'node:zlib';

export type FloatDType = 'F32' | 'F16' | 'BF16';

/** A tensor as raw little-endian bytes, with the safetensors dtype name. */
export interface TensorSpec {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

export const ITEM_SIZE: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 };

// ---------------------------------------------------------------------------------------------------------
// Numbers

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** float32 → bfloat16 bits, round to nearest even. */
export function toBf16Bits(value: number): number {
  f32[0] = value;
  const bits = f32Bits[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0; // NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  return rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/** float32 → IEEE half bits, round to nearest even (subnormals and overflow to infinity included). */
export function toF16Bits(value: number): number {
  f32[0] = value;
  const bits = f32Bits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127;
  if (exponent === 128) return sign | 0x7c00 | (bits & 0x7fffff ? 0x200 : 0);
  const magnitude = Math.abs(f32[0]);
  // Below 2^-14 halves are subnormal: multiples of 2^-24 (rounding up to 2^-14 lands on the first normal).
  if (exponent < -14) return sign | roundHalfEven(magnitude / 2 ** -24);
  // A mantissa that rounds up to 1024 carries into the exponent, and past the largest finite into infinity.
  const half = ((exponent + 15) << 10) + roundHalfEven((magnitude / 2 ** exponent - 1) * 1024);
  return sign | Math.min(half, 0x7c00);
}

function fromF16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Encodes values in a float dtype as little-endian bytes. */
export function encode(dtype: FloatDType, values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * ITEM_SIZE[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    if (dtype === 'F32') view.setFloat32(4 * i, values[i], true);
    else view.setUint16(2 * i, dtype === 'BF16' ? toBf16Bits(values[i]) : toF16Bits(values[i]), true);
  }
  return out;
}

/** Decodes little-endian bytes of a float dtype. */
export function decode(dtype: FloatDType, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / ITEM_SIZE[dtype]);
  for (let i = 0; i < out.length; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(4 * i, true);
    else if (dtype === 'BF16') out[i] = new Float32Array(new Uint32Array([view.getUint16(2 * i, true) << 16]).buffer)[0];
    else out[i] = fromF16Bits(view.getUint16(2 * i, true));
  }
  return out;
}

export function tensor(dtype: FloatDType, shape: number[], values: ArrayLike<number>): TensorSpec {
  return { dtype, shape, data: encode(dtype, values) };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// safetensors

/** A safetensors file from an arbitrary header value (any JSON, valid or not) and a data section. */
export function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(json.length), true);
  return concat([length, json, data]);
}

export function safetensorsBytes(tensors: Record<string, TensorSpec>, metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.data.length] };
    at += t.data.length;
  }
  return rawSafetensors(header, concat(Object.values(tensors).map((t) => t.data)));
}

// ---------------------------------------------------------------------------------------------------------
// pickle

/** Emits pickle opcodes one call at a time, for torch-like state dicts and hand-made hostile streams. */
export class PickleBuilder {
  private readonly out: number[] = [];

  raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }

  proto(version = 2): this {
    return this.raw(0x80, version);
  }

  mark(): this {
    return this.raw(0x28);
  }

  stop(): this {
    return this.raw(0x2e);
  }

  emptyDict(): this {
    return this.raw(0x7d);
  }

  emptyList(): this {
    return this.raw(0x5d);
  }

  emptyTuple(): this {
    return this.raw(0x29);
  }

  /** TUPLE closing the last MARK */
  tuple(): this {
    return this.raw(0x74);
  }

  tuple1(): this {
    return this.raw(0x85);
  }

  tuple2(): this {
    return this.raw(0x86);
  }

  reduce(): this {
    return this.raw(0x52);
  }

  build(): this {
    return this.raw(0x62);
  }

  binpersid(): this {
    return this.raw(0x51);
  }

  setitem(): this {
    return this.raw(0x73);
  }

  setitems(): this {
    return this.raw(0x75);
  }

  append(): this {
    return this.raw(0x61);
  }

  bool(value: boolean): this {
    return this.raw(value ? 0x88 : 0x89);
  }

  none(): this {
    return this.raw(0x4e);
  }

  put(index: number): this {
    return this.raw(0x71, index);
  }

  get(index: number): this {
    return this.raw(0x68, index);
  }

  string(value: string): this {
    const utf8 = new TextEncoder().encode(value);
    if (utf8.length < 256) return this.raw(0x8c, utf8.length, ...utf8);
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, utf8.length, true);
    return this.raw(0x58, ...length, ...utf8);
  }

  int(value: number): this {
    if (value >= 0 && value < 0x100) return this.raw(0x4b, value);
    if (value >= 0 && value < 0x10000) return this.raw(0x4d, value & 0xff, value >>> 8);
    if (value >= -0x80000000 && value < 0x80000000) {
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setInt32(0, value, true);
      return this.raw(0x4a, ...bytes);
    }
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigInt64(0, BigInt(value), true);
    return this.raw(0x8a, 8, ...bytes); // LONG1
  }

  /** A tuple of ints, as pickle writes sizes and strides. */
  ints(values: number[]): this {
    if (values.length === 0) return this.emptyTuple();
    this.mark();
    for (const v of values) this.int(v);
    return this.tuple();
  }

  global(module: string, name: string): this {
    return this.raw(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }

  stackGlobal(module: string, name: string): this {
    return this.string(module).string(name).raw(0x93);
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

export interface PickledTensor {
  name: string;
  /** torch storage class name, e.g. FloatStorage */
  storageType: string;
  storageKey: string;
  storageNumel: number;
  storageOffset: number;
  shape: number[];
  stride: number[];
  /** wrap in torch._utils._rebuild_parameter, as saving nn.Parameters does */
  asParameter?: boolean;
}

export const STORAGE_TYPE: Record<string, string> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', I64: 'LongStorage' };

export function contiguousStride(shape: number[]): number[] {
  const stride = new Array<number>(shape.length);
  let step = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = step;
    step *= shape[i];
  }
  return stride;
}

/** A state dict pickled the way torch.save(model.state_dict()) does (protocol 2, OrderedDict, SETITEMS). */
export function stateDictPickle(tensors: PickledTensor[]): Uint8Array {
  const p = new PickleBuilder().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  for (const t of tensors) {
    p.string(t.name);
    if (t.asParameter) p.global('torch._utils', '_rebuild_parameter').mark();
    p.global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().string('storage').global('torch', t.storageType).string(t.storageKey).string('cpu').int(t.storageNumel).tuple().binpersid();
    p.int(t.storageOffset).ints(t.shape).ints(t.stride).bool(false);
    p.global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
    if (t.asParameter) p.bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  }
  return p.setitems().stop().bytes();
}

// ---------------------------------------------------------------------------------------------------------
// zip (as PyTorch writes it: STORED entries, data aligned to 64 bytes with a padding extra field)

export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** deflate this entry (PyTorch never does; tests use it to check the refusal) */
  deflate?: boolean;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

class ByteWriter {
  private readonly parts: Uint8Array[] = [];
  length = 0;

  bytes(data: Uint8Array): this {
    this.parts.push(data);
    this.length += data.length;
    return this;
  }

  u16(v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return this.bytes(b);
  }

  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.bytes(b);
  }

  u64(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    return this.bytes(b);
  }

  result(): Uint8Array {
    return concat(this.parts);
  }
}

/**
 * A zip archive. `zip64` writes the zip64 records and extra fields even for small files (so the reader's zip64
 * path is exercised without a 4 GiB file).
 */
export function zipBytes(entries: ZipInput[], options: { zip64?: boolean; alignment?: number } = {}): Uint8Array {
  const alignment = options.alignment ?? 64;
  const out = new ByteWriter();
  const central = new ByteWriter();
  const name = (e: ZipInput) => new TextEncoder().encode(e.name);
  for (const entry of entries) {
    const stored = entry.deflate ? deflateRawSync(entry.data) : entry.data;
    const nameBytes = name(entry);
    const headerOffset = out.length;
    const unpadded = headerOffset + 30 + nameBytes.length + 4;
    const padding = (alignment - (unpadded % alignment)) % alignment;
    out.u32(0x04034b50).u16(20).u16(0).u16(entry.deflate ? 8 : 0).u16(0).u16(0).u32(crc32(entry.data));
    out.u32(stored.length).u32(entry.data.length).u16(nameBytes.length).u16(4 + padding);
    out.bytes(nameBytes).u16(0x4246).u16(padding).bytes(new Uint8Array(padding)).bytes(stored);

    const big = options.zip64 === true;
    central.u32(0x02014b50).u16(45).u16(big ? 45 : 20).u16(0).u16(entry.deflate ? 8 : 0).u16(0).u16(0).u32(crc32(entry.data));
    central.u32(big ? 0xffffffff : stored.length).u32(big ? 0xffffffff : entry.data.length);
    central.u16(nameBytes.length).u16(big ? 28 : 0).u16(0).u16(0).u16(0).u32(0).u32(big ? 0xffffffff : headerOffset);
    central.bytes(nameBytes);
    if (big) central.u16(0x0001).u16(24).u64(entry.data.length).u64(stored.length).u64(headerOffset);
  }
  const directoryOffset = out.length;
  const directory = central.result();
  out.bytes(directory);
  if (options.zip64) {
    const recordOffset = out.length;
    out.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(entries.length).u64(entries.length);
    out.u64(directory.length).u64(directoryOffset);
    out.u32(0x07064b50).u32(0).u64(recordOffset).u32(1);
    out.u32(0x06054b50).u16(0).u16(0).u16(0xffff).u16(0xffff).u32(0xffffffff).u32(0xffffffff).u16(0);
  } else {
    out.u32(0x06054b50).u16(0).u16(0).u16(entries.length).u16(entries.length).u32(directory.length).u32(directoryOffset).u16(0);
  }
  return out.result();
}

export interface TorchZipOptions {
  /** the archive's top folder (torch uses the file's stem, "archive" for buffers) */
  folder?: string;
  zip64?: boolean;
  /** entry names, relative to the folder, to deflate */
  deflate?: string[];
  byteOrder?: string;
}

/** A PyTorch zip checkpoint from a pickle and storages (`data/<key>`). */
export function torchZipFromParts(pickle: Uint8Array, storages: Map<string, Uint8Array>, options: TorchZipOptions = {}): Uint8Array {
  const folder = options.folder ?? 'archive';
  const deflate = new Set(options.deflate ?? []);
  const text = (s: string) => new TextEncoder().encode(s);
  const entries: ZipInput[] = [
    { name: 'data.pkl', data: pickle },
    { name: 'byteorder', data: text(options.byteOrder ?? 'little') },
    ...[...storages].map(([key, data]) => ({ name: `data/${key}`, data })),
    { name: 'version', data: text('3\n') },
  ].map((e) => ({ ...e, name: `${folder}/${e.name}`, deflate: deflate.has(e.name) }));
  return zipBytes(entries, { zip64: options.zip64 });
}

/** A PyTorch zip checkpoint with one storage per tensor, as torch.save writes a state dict. */
export function torchZipBytes(tensors: Record<string, TensorSpec>, options: TorchZipOptions = {}): Uint8Array {
  const storages = new Map<string, Uint8Array>();
  const pickled: PickledTensor[] = Object.entries(tensors).map(([name, t], i) => {
    const key = String(i);
    storages.set(key, t.data);
    const itemSize = ITEM_SIZE[t.dtype as FloatDType] ?? 8;
    return {
      name,
      storageType: STORAGE_TYPE[t.dtype],
      storageKey: key,
      storageNumel: t.data.length / itemSize,
      storageOffset: 0,
      shape: t.shape,
      stride: contiguousStride(t.shape),
    };
  });
  return torchZipFromParts(stateDictPickle(pickled), storages, options);
}

// ---------------------------------------------------------------------------------------------------------
// Model folders

export interface TinyModel {
  dModel: number;
  nHeads: number;
  nLayers: number;
  vocabSize: number;
  /** MLP width as a multiple of dModel */
  ratio: number;
  qkLn: boolean;
  noBias: boolean;
}

export const TINY: TinyModel = { dModel: 16, nHeads: 2, nLayers: 2, vocabSize: 40, ratio: 4, qkLn: true, noBias: true };

export type Layout = 'mpt' | 'mosaic_gpt';

/** config.json for either layout. */
export function configJson(model: TinyModel, layout: Layout): Record<string, unknown> {
  const shared = { d_model: model.dModel, n_heads: model.nHeads, n_layers: model.nLayers, vocab_size: model.vocabSize, max_seq_len: 64, no_bias: model.noBias };
  if (layout === 'mpt') {
    return { model_type: 'mpt', ...shared, expansion_ratio: model.ratio, attn_config: { alibi: true, qk_ln: model.qkLn } };
  }
  return { model_type: 'mosaic_gpt', ...shared, mlp_ratio: model.ratio, attn_qk_ln: model.qkLn, alibi: true };
}

/** Every parameter of the model under its checkpoint name in `layout`, with its shape. */
export function parameterShapes(model: TinyModel, layout: Layout): Array<[string, number[]]> {
  const d = model.dModel;
  const ff = model.dModel * model.ratio;
  const mpt = layout === 'mpt';
  const params: Array<[string, number[]]> = [['transformer.wte.weight', [model.vocabSize, d]]];
  const add = (name: string, shape: number[], isNorm: boolean) => {
    params.push([`${name}.weight`, shape]);
    if (!model.noBias) params.push([`${name}.bias`, isNorm ? [d] : [shape[0]]]);
  };
  for (let i = 0; i < model.nLayers; i++) {
    const b = `transformer.blocks.${i}`;
    add(`${b}.${mpt ? 'norm_1' : 'ln_1'}`, [d], true);
    add(`${b}.attn.Wqkv`, [3 * d, d], false);
    if (model.qkLn) {
      add(`${b}.attn.q_ln`, [d], true);
      add(`${b}.attn.k_ln`, [d], true);
    }
    add(`${b}.attn.out_proj`, [d, d], false);
    add(`${b}.${mpt ? 'norm_2' : 'ln_2'}`, [d], true);
    add(`${b}.${mpt ? 'ffn.up_proj' : 'mlp.mlp_up'}`, [ff, d], false);
    add(`${b}.${mpt ? 'ffn.down_proj' : 'mlp.mlp_down'}`, [d, ff], false);
  }
  add(`transformer.${mpt ? 'norm_f' : 'ln_f'}`, [d], true);
  return params;
}

/** Values k/64, |k| ≤ 100, so they are exact in F32, F16 and BF16 and differ from tensor to tensor. */
export function patternValues(count: number, seed: number): Float32Array {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = (((i * 37 + seed * 101) % 201) - 100) / 64;
  return values;
}

export function modelTensors(model: TinyModel, layout: Layout, dtype: FloatDType): Record<string, TensorSpec> {
  const tensors: Record<string, TensorSpec> = {};
  parameterShapes(model, layout).forEach(([name, shape], i) => {
    tensors[name] = tensor(dtype, shape, patternValues(shape.reduce((a, b) => a * b, 1), i));
  });
  return tensors;
}

export async function makeTempDir(prefix = 'flash-mpt-ckpt-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function writeModelFolder(
  dir: string,
  model: TinyModel,
  layout: Layout,
  weights: { file: string; bytes: Uint8Array } | null,
): Promise<void> {
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(configJson(model, layout)));
  if (weights) await fs.writeFile(path.join(dir, weights.file), weights.bytes);
}

/** Splits tensors over `shardCount` files in the transformers naming and writes the index next to them. */
export async function writeSharded(
  dir: string,
  tensors: Record<string, TensorSpec>,
  format: 'safetensors' | 'bin',
  shardCount: number,
  options: TorchZipOptions = {},
): Promise<Record<string, string>> {
  const names = Object.keys(tensors);
  const weightMap: Record<string, string> = {};
  const stem = format === 'safetensors' ? 'model' : 'pytorch_model';
  for (let s = 0; s < shardCount; s++) {
    const shardName = `${stem}-${String(s + 1).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.${format}`;
    const part: Record<string, TensorSpec> = {};
    names.filter((_, i) => i % shardCount === s).forEach((n) => {
      part[n] = tensors[n];
      weightMap[n] = shardName;
    });
    const bytes = format === 'safetensors' ? safetensorsBytes(part) : torchZipBytes(part, { folder: shardName.replace(/\.bin$/, ''), ...options });
    await fs.writeFile(path.join(dir, shardName), bytes);
  }
  const index = { metadata: { total_size: 0 }, weight_map: weightMap };
  await fs.writeFile(path.join(dir, format === 'safetensors' ? 'model.safetensors.index.json' : 'pytorch_model.bin.index.json'), JSON.stringify(index));
  return weightMap;
}
