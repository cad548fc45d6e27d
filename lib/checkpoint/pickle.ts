/**
 * A restricted unpickler for the `data.pkl` of a PyTorch zip checkpoint.
 *
 * It interprets the opcodes torch.save emits (protocol 2, plus the few later ones that are plain data) into
 * JS values and never runs anything: the only globals it accepts are the handful PyTorch uses to describe a
 * state dict, each turned into a description (TorchStorage, TorchTensor, a Map) by this file. Any other global,
 * any call of something that is not one of those, and any object-building opcode is refused with
 * E_UNSAFE_PICKLE before the rest of the stream is read.
 */
import { FlashMptError } from '../errors';

/** A storage reference from a persistent id: the bytes of zip entry `data/<key>`. */
export class TorchStorage {
  constructor(
    /** element type in safetensors spelling (F32, F16, BF16, or another type the engine rejects later) */
    readonly dtype: string,
    readonly key: string,
    readonly location: string,
    /** number of elements */
    readonly numel: number,
  ) {}
}

/** A tensor view of a storage, as `torch._utils._rebuild_tensor_v2` would build it. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/** An accepted global; only ever constructed for names in ALLOWED_GLOBALS. */
export class PickleGlobal {
  constructor(
    readonly qualifiedName: string,
    readonly role: GlobalRole,
  ) {}
}

/** A Python list (mutable, unlike tuples, which are frozen arrays). */
export class PickleList {
  constructor(readonly items: PickleValue[]) {}
}

export type PickleDict = Map<PickleValue, PickleValue>;

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly PickleValue[]
  | PickleList
  | PickleDict
  | PickleGlobal
  | TorchStorage
  | TorchTensor;

type GlobalRole =
  | { kind: 'ordered-dict' }
  | { kind: 'rebuild-tensor'; withGradArgs: boolean }
  | { kind: 'rebuild-parameter' }
  | { kind: 'storage-type'; dtype: string };

const STORAGE_DTYPES: Array<[string, string]> = [
  ['FloatStorage', 'F32'],
  ['HalfStorage', 'F16'],
  ['BFloat16Storage', 'BF16'],
  // Not usable by the engine, but pure type tags: accepting them lets a checkpoint carry e.g. int64 buffers,
  // which are ignored, instead of being refused as unsafe.
  ['DoubleStorage', 'F64'],
  ['LongStorage', 'I64'],
  ['IntStorage', 'I32'],
  ['ShortStorage', 'I16'],
  ['CharStorage', 'I8'],
  ['ByteStorage', 'U8'],
  ['BoolStorage', 'BOOL'],
];

/** Keyed by module and name exactly as pickled, so no other spelling of a path can reach a different object. */
const ALLOWED_GLOBALS = new Map<string, GlobalRole>([
  ['collections\nOrderedDict', { kind: 'ordered-dict' }],
  ['torch._utils\n_rebuild_tensor_v2', { kind: 'rebuild-tensor', withGradArgs: true }],
  ['torch._utils\n_rebuild_tensor', { kind: 'rebuild-tensor', withGradArgs: false }],
  ['torch._utils\n_rebuild_parameter', { kind: 'rebuild-parameter' }],
  ...STORAGE_DTYPES.map(([name, dtype]): [string, GlobalRole] => [`torch\n${name}`, { kind: 'storage-type', dtype }]),
]);

/** Opcodes that instantiate arbitrary classes or consult the extension registry: never needed for tensors. */
const OBJECT_BUILDING_OPCODES = new Map<number, string>([
  [0x81, 'NEWOBJ'],
  [0x92, 'NEWOBJ_EX'],
  [0x69, 'INST'],
  [0x6f, 'OBJ'],
  [0x82, 'EXT1'],
  [0x83, 'EXT2'],
  [0x84, 'EXT4'],
]);

const MAX_LONG_BYTES = 64;

function unsafe(message: string): FlashMptError {
  return new FlashMptError('E_UNSAFE_PICKLE', `pickle: ${message}`);
}

function isTuple(value: PickleValue): value is readonly PickleValue[] {
  return Array.isArray(value);
}

function isCount(value: PickleValue): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function tuple(items: PickleValue[]): readonly PickleValue[] {
  return Object.freeze(items);
}

class Unpickler {
  private position = 0;
  private readonly stack: PickleValue[] = [];
  /** stack heights at each open MARK */
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private malformed(message: string): FlashMptError {
    return new FlashMptError('E_CHECKPOINT', `pickle: ${message} (at byte ${this.position})`);
  }

  private take(length: number): number {
    if (length > this.bytes.length - this.position) throw this.malformed('truncated');
    const start = this.position;
    this.position += length;
    return start;
  }

  private u8(): number {
    return this.view.getUint8(this.take(1));
  }

  private u16(): number {
    return this.view.getUint16(this.take(2), true);
  }

  private u32(): number {
    return this.view.getUint32(this.take(4), true);
  }

  private u64(): number {
    const value = this.view.getBigUint64(this.take(8), true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw this.malformed(`length ${value} is too large`);
    return Number(value);
  }

  private slice(length: number): Uint8Array {
    const start = this.take(length);
    return this.bytes.subarray(start, start + length);
  }

  private utf8(length: number): string {
    const raw = this.slice(length);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw this.malformed('string is not valid UTF-8');
    }
  }

  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.position);
    if (end < 0) throw this.malformed('truncated GLOBAL name');
    return this.utf8(end - this.position + 1).slice(0, -1);
  }

  /** Little-endian two's-complement integer of LONG1/LONG4; a number when it fits exactly. */
  private long(length: number): number | bigint {
    // Tensor metadata never needs more; the cap keeps a hostile LONG4 from costing quadratic time.
    if (length > MAX_LONG_BYTES) throw this.malformed(`${length}-byte integer is too large`);
    const raw = this.slice(length);
    let value = 0n;
    for (let i = raw.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(raw[i]);
    if (raw.length > 0 && raw[raw.length - 1] & 0x80) value -= 1n << BigInt(8 * raw.length);
    const small = Number(value);
    return Number.isSafeInteger(small) ? small : value;
  }

  private push(value: PickleValue): void {
    this.stack.push(value);
  }

  private pop(): PickleValue {
    const floor = this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= floor) throw this.malformed('stack underflow');
    return this.stack.pop() as PickleValue;
  }

  private top(): PickleValue {
    const floor = this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= floor) throw this.malformed('stack underflow');
    return this.stack[this.stack.length - 1];
  }

  private popMark(): PickleValue[] {
    const height = this.marks.pop();
    if (height === undefined) throw this.malformed('no MARK to pop to');
    return this.stack.splice(height);
  }

  private memoGet(index: number): PickleValue {
    if (!this.memo.has(index)) throw this.malformed(`memo entry ${index} was never stored`);
    return this.memo.get(index) as PickleValue;
  }

  private global(module: string, name: string): PickleGlobal {
    const qualifiedName = `${module}.${name}`;
    const role = ALLOWED_GLOBALS.get(`${module}\n${name}`);
    if (role === undefined) throw unsafe(`refusing global ${qualifiedName}: only PyTorch tensor globals are allowed`);
    return new PickleGlobal(qualifiedName, role);
  }

  private setItems(target: PickleValue, items: PickleValue[]): void {
    if (!(target instanceof Map)) throw this.malformed('SETITEM(S) on something that is not a dict');
    if (items.length % 2 !== 0) throw this.malformed('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  }

  private append(target: PickleValue, items: PickleValue[]): void {
    if (!(target instanceof PickleList)) throw this.malformed('APPEND(S) on something that is not a list');
    target.items.push(...items);
  }

  /** REDUCE: describe what an accepted callable would have built; nothing is called. */
  private reduce(callable: PickleValue, args: PickleValue): PickleValue {
    if (!(callable instanceof PickleGlobal)) {
      throw unsafe('refusing REDUCE on a value that is not an allowed global');
    }
    if (!isTuple(args)) throw this.malformed(`arguments of ${callable.qualifiedName} are not a tuple`);
    const { role, qualifiedName } = callable;
    switch (role.kind) {
      case 'ordered-dict':
        if (args.length !== 0) throw this.malformed(`${qualifiedName} called with arguments`);
        return new Map();
      case 'rebuild-tensor':
        return this.rebuildTensor(qualifiedName, args, role.withGradArgs);
      case 'rebuild-parameter':
        if (!(args[0] instanceof TorchTensor)) throw this.malformed(`${qualifiedName} of something that is not a tensor`);
        return args[0];
      case 'storage-type':
        throw unsafe(`refusing to call ${qualifiedName}`);
    }
  }

  private rebuildTensor(qualifiedName: string, args: readonly PickleValue[], withGradArgs: boolean): TorchTensor {
    // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
    const arity = withGradArgs ? [6, 7] : [4];
    const [storage, storageOffset, shape, stride] = args;
    if (
      !arity.includes(args.length) ||
      !(storage instanceof TorchStorage) ||
      !isCount(storageOffset) ||
      !isTuple(shape) ||
      !shape.every(isCount) ||
      !isTuple(stride) ||
      !stride.every(isCount) ||
      stride.length !== shape.length
    ) {
      throw this.malformed(`unexpected arguments to ${qualifiedName}`);
    }
    return new TorchTensor(storage, storageOffset, shape as number[], stride as number[]);
  }

  /** BINPERSID: ('storage', storage_type, key, location, numel) as torch.save writes it. */
  private persistentLoad(pid: PickleValue): TorchStorage {
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') throw this.malformed('unexpected persistent id');
    const [, storageType, key, location, numel] = pid;
    if (!(storageType instanceof PickleGlobal) || storageType.role.kind !== 'storage-type') {
      throw this.malformed('persistent id without a storage type');
    }
    if (typeof key !== 'string' || typeof location !== 'string' || !isCount(numel)) {
      throw this.malformed('malformed storage persistent id');
    }
    return new TorchStorage(storageType.role.dtype, key, location, numel);
  }

  private build(target: PickleValue): void {
    // An OrderedDict's state is its `_metadata` attribute (module versions): nothing the loader needs.
    if (!(target instanceof Map)) throw unsafe('refusing BUILD on an object that is not a dict');
  }

  run(): PickleValue {
    for (;;) {
      const opcodeAt = this.position;
      const opcode = this.u8();
      switch (opcode) {
        case 0x80: { // PROTO
          const protocol = this.u8();
          if (protocol > 5) throw this.malformed(`unsupported pickle protocol ${protocol}`);
          break;
        }
        case 0x95: // FRAME: a length hint only
          this.u64();
          break;
        case 0x2e: // STOP
          return this.pop();
        case 0x28: // MARK
          this.marks.push(this.stack.length);
          break;
        case 0x7d: // EMPTY_DICT
          this.push(new Map());
          break;
        case 0x64: { // DICT
          const dict: PickleDict = new Map();
          this.setItems(dict, this.popMark());
          this.push(dict);
          break;
        }
        case 0x5d: // EMPTY_LIST
          this.push(new PickleList([]));
          break;
        case 0x6c: // LIST
          this.push(new PickleList(this.popMark()));
          break;
        case 0x29: // EMPTY_TUPLE
          this.push(tuple([]));
          break;
        case 0x74: // TUPLE
          this.push(tuple(this.popMark()));
          break;
        case 0x85: // TUPLE1
          this.push(tuple([this.pop()]));
          break;
        case 0x86: { // TUPLE2
          const second = this.pop();
          this.push(tuple([this.pop(), second]));
          break;
        }
        case 0x87: { // TUPLE3
          const third = this.pop();
          const second = this.pop();
          this.push(tuple([this.pop(), second, third]));
          break;
        }
        case 0x58: // BINUNICODE
          this.push(this.utf8(this.u32()));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.push(this.utf8(this.u8()));
          break;
        case 0x8d: // BINUNICODE8
          this.push(this.utf8(this.u64()));
          break;
        case 0x43: // SHORT_BINBYTES
          this.push(this.slice(this.u8()));
          break;
        case 0x42: // BINBYTES
          this.push(this.slice(this.u32()));
          break;
        case 0x8e: // BINBYTES8
          this.push(this.slice(this.u64()));
          break;
        case 0x4a: // BININT
          this.push(this.view.getInt32(this.take(4), true));
          break;
        case 0x4b: // BININT1
          this.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.push(this.u16());
          break;
        case 0x8a: // LONG1
          this.push(this.long(this.u8()));
          break;
        case 0x8b: // LONG4
          this.push(this.long(this.u32()));
          break;
        case 0x47: // BINFLOAT (big-endian)
          this.push(this.view.getFloat64(this.take(8), false));
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x71: // BINPUT
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.u32(), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;
        case 0x68: // BINGET
          this.push(this.memoGet(this.u8()));
          break;
        case 0x6a: // LONG_BINGET
          this.push(this.memoGet(this.u32()));
          break;
        case 0x30: // POP
          this.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;
        case 0x63: { // GLOBAL
          const module = this.line();
          this.push(this.global(module, this.line()));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw this.malformed('STACK_GLOBAL needs two strings');
          this.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop();
          this.push(this.reduce(this.pop(), args));
          break;
        }
        case 0x51: // BINPERSID
          this.push(this.persistentLoad(this.pop()));
          break;
        case 0x73: { // SETITEM
          const value = this.pop();
          const key = this.pop();
          this.setItems(this.top(), [key, value]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x61: { // APPEND
          const item = this.pop();
          this.append(this.top(), [item]);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          this.append(this.top(), items);
          break;
        }
        case 0x62: // BUILD
          this.pop();
          this.build(this.top());
          break;
        default: {
          const objectBuilder = OBJECT_BUILDING_OPCODES.get(opcode);
          if (objectBuilder !== undefined) throw unsafe(`refusing opcode ${objectBuilder} at byte ${opcodeAt}`);
          this.position = opcodeAt;
          throw this.malformed(`unsupported opcode 0x${opcode.toString(16).padStart(2, '0')}`);
        }
      }
    }
  }
}

/**
 * Reads a pickle made by torch.save into plain values. Pure (no I/O) so it can be fuzzed: every failure is a
 * FlashMptError, E_UNSAFE_PICKLE for anything that would execute code, E_CHECKPOINT for malformed input.
 */
export function readPickle(bytes: Uint8Array): PickleValue {
  return new Unpickler(bytes).run();
}
