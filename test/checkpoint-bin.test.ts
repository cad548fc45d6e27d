import * as fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { PickleList, readPickle, TorchStorage, TorchTensor } from '../lib/checkpoint/pickle';
import { readTorchZip } from '../lib/checkpoint/torch-zip';
import { FlashMptError } from '../lib/errors';
import {
  contiguousStride,
  decode,
  encode,
  makeTempDir,
  PickleBuilder,
  type PickledTensor,
  safetensorsBytes,
  stateDictPickle,
  tensor,
  torchZipBytes,
  torchZipFromParts,
  zipBytes,
} from './helpers/checkpoint-writers';
import { describeWithData, sharedPath } from './helpers/data';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

function pickleError(bytes: Uint8Array): FlashMptError {
  try {
    readPickle(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(FlashMptError);
    return err as FlashMptError;
  }
  throw new Error('the pickle was accepted');
}

const floatTensor = (name: string, key: string, shape: number[], extra: Partial<PickledTensor> = {}): PickledTensor => ({
  name,
  storageType: 'FloatStorage',
  storageKey: key,
  storageNumel: shape.reduce((a, b) => a * b, 1),
  storageOffset: 0,
  shape,
  stride: contiguousStride(shape),
  ...extra,
});

describe('readPickle: values', () => {
  it('reads protocol 4 data as Python wrote it', () => {
    // pickle.dumps({'a': [1, -2, 3.5, 'x', (True, None), -300, 70000, -2**31], 'b': 2**70, 'c': -2**70,
    //               'd': b'\x00\x01', 'e': {'n': 'ü'}}, protocol=4)
    const value = readPickle(
      hex(
        '8004956b000000000000007d94288c0161945d94284b014afeffffff47400c0000000000008c017894884e86944ad4feffff4a70110100' +
          '4a00000080658c0162948a090000000000000000408c0163948a090000000000000000c08c01649443020001948c0165947d948c016e94' +
          '8c02c3bc9473752e',
      ),
    ) as Map<unknown, unknown>;
    expect(value).toBeInstanceOf(Map);
    expect((value.get('a') as PickleList).items).toEqual([1, -2, 3.5, 'x', [true, null], -300, 70000, -(2 ** 31)]);
    expect(value.get('b')).toBe(2n ** 70n);
    expect(value.get('c')).toBe(-(2n ** 70n));
    expect(value.get('d')).toEqual(new Uint8Array([0, 1]));
    expect(value.get('e')).toEqual(new Map([['n', 'ü']]));
  });

  it('builds tensor descriptions from a torch-style state dict', () => {
    const dict = readPickle(stateDictPickle([floatTensor('w', '0', [3, 4]), floatTensor('p', '1', [5], { asParameter: true, storageOffset: 2, storageNumel: 7 })])) as Map<string, unknown>;
    expect(dict.get('w')).toEqual(new TorchTensor(new TorchStorage('F32', '0', 'cpu', 12), 0, [3, 4], [4, 1]));
    expect(dict.get('p')).toEqual(new TorchTensor(new TorchStorage('F32', '1', 'cpu', 7), 2, [5], [1]));
  });

  it.each([
    ['truncated input', hex('80027d71'), 'E_CHECKPOINT', 'pickle: truncated'],
    ['no STOP', hex('80027d'), 'E_CHECKPOINT', 'pickle: truncated'],
    ['an unknown opcode', hex('8002ff'), 'E_CHECKPOINT', 'unsupported opcode 0xff'],
    ['a text-protocol opcode', new TextEncoder().encode('I42\n.'), 'E_CHECKPOINT', 'unsupported opcode 0x49'],
    ['an unset memo entry', hex('8002680a2e'), 'E_CHECKPOINT', 'memo entry 10 was never stored'],
    ['stack underflow', hex('8002742e'), 'E_CHECKPOINT', 'no MARK to pop to'],
    ['SETITEM on a list', hex('80025d4b014b02732e'), 'E_CHECKPOINT', 'SETITEM(S) on something that is not a dict'],
    ['a newer protocol', hex('80062e'), 'E_CHECKPOINT', 'unsupported pickle protocol 6'],
    ['a huge integer', Uint8Array.from([0x80, 2, 0x8b, 0, 0, 1, 0]), 'E_CHECKPOINT', '65536-byte integer is too large'],
    ['a bad persistent id', new PickleBuilder().proto().string('x').binpersid().stop().bytes(), 'E_CHECKPOINT', 'unexpected persistent id'],
  ])('refuses %s', (_, bytes, code, message) => {
    const err = pickleError(bytes);
    expect(err.code).toBe(code);
    expect(err.message).toContain(message);
  });
});

describe('readPickle: hostile pickles run nothing', () => {
  let dir: string;
  let sentinel: string;
  beforeEach(async () => {
    dir = await makeTempDir('flash-mpt-pickle-');
    sentinel = path.join(dir, 'pwned');
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const touch = () => `touch ${sentinel}`;
  const payloads: Array<[string, () => Uint8Array, string]> = [
    ['os.system', () => new PickleBuilder().proto().global('os', 'system').string(touch()).tuple1().reduce().stop().bytes(), 'refusing global os.system'],
    ['posix.system', () => new PickleBuilder().proto().global('posix', 'system').string(touch()).tuple1().reduce().stop().bytes(), 'refusing global posix.system'],
    [
      'builtins.eval',
      () => new PickleBuilder().proto().global('builtins', 'eval').string(`open(${JSON.stringify(sentinel)}, 'w')`).tuple1().reduce().stop().bytes(),
      'refusing global builtins.eval',
    ],
    [
      'subprocess.Popen',
      () =>
        new PickleBuilder().proto().global('subprocess', 'Popen').emptyList().string('touch').append().string(sentinel).append().tuple1().reduce().stop().bytes(),
      'refusing global subprocess.Popen',
    ],
    ['STACK_GLOBAL builtins.exec', () => new PickleBuilder().proto(4).stackGlobal('builtins', 'exec').string(`open(${JSON.stringify(sentinel)}, 'w')`).tuple1().reduce().stop().bytes(), 'refusing global builtins.exec'],
    [
      'STACK_GLOBAL names fetched from the memo',
      () => new PickleBuilder().proto(4).string('os').put(0).string('system').put(1).raw(0x30, 0x30).get(0).get(1).raw(0x93).string(touch()).tuple1().reduce().stop().bytes(),
      'refusing global os.system',
    ],
    [
      'builtins.getattr to reach os.system from an allowed module',
      () => new PickleBuilder().proto().global('builtins', 'getattr').global('collections', 'OrderedDict').string('__init__').tuple2().reduce().stop().bytes(),
      'refusing global builtins.getattr',
    ],
    [
      'a dotted name splitting an allowed path differently',
      () => new PickleBuilder().proto().global('torch', '_utils._rebuild_tensor_v2').stop().bytes(),
      'refusing global torch._utils._rebuild_tensor_v2',
    ],
    [
      'os.system hidden in the arguments of _rebuild_tensor_v2',
      () =>
        new PickleBuilder()
          .proto()
          .global('torch._utils', '_rebuild_tensor_v2')
          .mark()
          .global('os', 'system')
          .string(touch())
          .tuple1()
          .reduce()
          .int(0)
          .ints([1])
          .ints([1])
          .bool(false)
          .emptyTuple()
          .tuple()
          .reduce()
          .stop()
          .bytes(),
      'refusing global os.system',
    ],
    [
      'nested REDUCE: calling the result of an allowed call',
      () => new PickleBuilder().proto().global('collections', 'OrderedDict').emptyTuple().reduce().string(touch()).tuple1().reduce().stop().bytes(),
      'refusing REDUCE on a value that is not an allowed global',
    ],
    ['calling a string', () => new PickleBuilder().proto().string('os.system').string(touch()).tuple1().reduce().stop().bytes(), 'refusing REDUCE on a value that is not an allowed global'],
    ['calling a storage type', () => new PickleBuilder().proto().global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes(), 'refusing to call torch.FloatStorage'],
    ['NEWOBJ', () => new PickleBuilder().proto().global('collections', 'OrderedDict').emptyTuple().raw(0x81).stop().bytes(), 'refusing opcode NEWOBJ'],
    ['INST', () => new PickleBuilder().mark().string(touch()).raw(0x69, ...new TextEncoder().encode('os\nsystem\n')).stop().bytes(), 'refusing opcode INST'],
    [
      'BUILD on a tensor (would call __setstate__)',
      () => {
        const p = stateDictPickle([floatTensor('w', '0', [1])]);
        // replace the final SETITEMS, STOP: build on the tensor left on the stack instead
        return Uint8Array.from([...p.subarray(0, p.length - 2), ...new PickleBuilder().emptyDict().build().stop().bytes()]);
      },
      'refusing BUILD on an object that is not a dict',
    ],
    [
      'bytes in protocol 2 (_codecs.encode)',
      () => hex('80025801000000647107635f636f646563730a656e636f64650a710858020000000001710958060000006c6174696e31710a86710b52710c2e'),
      'refusing global _codecs.encode',
    ],
  ];

  it.each(payloads)('refuses %s', (_, make, message) => {
    const err = pickleError(make());
    expect(err.code).toBe('E_UNSAFE_PICKLE');
    expect(err.message).toContain(message);
    expect(existsSync(sentinel)).toBe(false);
  });

  it('refuses a hostile pickle inside a .bin through the loader', async () => {
    const file = path.join(dir, 'pytorch_model.bin');
    const hostile = new PickleBuilder().proto().global('os', 'system').string(touch()).tuple1().reduce().stop().bytes();
    await fs.writeFile(file, torchZipFromParts(hostile, new Map()));
    await expect(readTorchZip(file)).rejects.toMatchObject({
      code: 'E_UNSAFE_PICKLE',
      message: `${file}: archive/data.pkl: pickle: refusing global os.system: only PyTorch tensor globals are allowed`,
    });
    expect(existsSync(sentinel)).toBe(false);
  });
});

describe('readTorchZip', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await makeTempDir();
    file = path.join(dir, 'pytorch_model.bin');
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function bytesAt(offset: number, length: number): Promise<Uint8Array> {
    return Uint8Array.from((await fs.readFile(file)).subarray(offset, offset + length));
  }

  async function zipError(bytes: Uint8Array): Promise<FlashMptError> {
    await fs.writeFile(file, bytes);
    return readTorchZip(file).then(
      () => {
        throw new Error('the checkpoint was accepted');
      },
      (err: FlashMptError) => {
        expect(err).toBeInstanceOf(FlashMptError);
        expect(err.code).toBe('E_CHECKPOINT');
        return err;
      },
    );
  }

  it.each([
    ['plain zip', {}],
    ['zip64 records', { zip64: true }],
    ['another top folder', { folder: 'pytorch_model' }],
  ])('locates each tensor’s bytes (%s)', async (_, options) => {
    const a = tensor('F32', [2, 3], [1, 2, 3, 4, 5, 6]);
    const b = tensor('BF16', [4], [0.5, -1, 2, 8]);
    await fs.writeFile(file, torchZipBytes({ a, b }, options));
    const tensors = await readTorchZip(file);
    expect(tensors.map((t) => [t.name, t.dtype, t.shape, t.bytes])).toEqual([
      ['a', 'F32', [2, 3], 24],
      ['b', 'BF16', [4], 8],
    ]);
    expect(tensors.every((t) => t.offset % 64 === 0)).toBe(true);
    expect(await bytesAt(tensors[0].offset, 24)).toEqual(a.data);
    expect(await bytesAt(tensors[1].offset, 8)).toEqual(b.data);
  });

  it('places views at their storage offset, and unwraps parameters', async () => {
    const storage = encode('F16', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const pickle = stateDictPickle([
      { ...floatTensor('head', '0', [4], { storageNumel: 10 }), storageType: 'HalfStorage' },
      { ...floatTensor('tail', '0', [2, 3], { storageNumel: 10, storageOffset: 4, asParameter: true }), storageType: 'HalfStorage' },
    ]);
    await fs.writeFile(file, torchZipFromParts(pickle, new Map([['0', storage]])));
    const [head, tail] = await readTorchZip(file);
    expect(tail.offset - head.offset).toBe(8);
    expect(Array.from(decode('F16', await bytesAt(head.offset, head.bytes)))).toEqual([0, 1, 2, 3]);
    expect(Array.from(decode('F16', await bytesAt(tail.offset, tail.bytes)))).toEqual([4, 5, 6, 7, 8, 9]);
  });

  it('skips non-tensor values and reports other storage dtypes for the index to judge', async () => {
    const pickle = new PickleBuilder()
      .proto()
      .emptyDict()
      .mark()
      .string('step')
      .int(7)
      .string('ids')
      .bytes();
    const ids = stateDictPickle([{ ...floatTensor('ids', '0', [2]), storageType: 'LongStorage' }]);
    // reuse the tensor-building part of a generated state dict: everything after its 'ids' key
    const idsKey = new PickleBuilder().string('ids').bytes();
    const at = Buffer.from(ids).indexOf(Buffer.from(idsKey)) + idsKey.length;
    const body = Uint8Array.from([...pickle, ...ids.subarray(at, ids.length - 2), ...new PickleBuilder().setitems().stop().bytes()]);
    await fs.writeFile(file, torchZipFromParts(body, new Map([['0', new Uint8Array(16)]])));
    expect((await readTorchZip(file)).map((t) => [t.name, t.dtype, t.bytes])).toEqual([['ids', 'I64', 16]]);
  });

  it('refuses a file that is not a zip', async () => {
    const err = await zipError(safetensorsBytes({ a: tensor('F32', [1], [1]) }));
    expect(err.message).toBe(`${file}: not a zip file (no end-of-central-directory record); expected a PyTorch zip checkpoint`);
  });

  it('refuses a compressed storage, naming the entry', async () => {
    const err = await zipError(torchZipBytes({ a: tensor('F32', [8], new Float32Array(8)) }, { deflate: ['data/0'] }));
    expect(err.message).toContain('zip entry archive/data/0 is compressed (method 8); only uncompressed (STORED) entries are supported');
  });

  it('refuses a compressed data.pkl', async () => {
    const err = await zipError(torchZipBytes({ a: tensor('F32', [8], new Float32Array(8)) }, { deflate: ['data.pkl'] }));
    expect(err.message).toContain('zip entry archive/data.pkl is compressed (method 8)');
  });

  it('refuses a zip without data.pkl', async () => {
    const err = await zipError(zipBytes([{ name: 'archive/data/0', data: new Uint8Array(4) }]));
    expect(err.message).toContain('expected one <folder>/data.pkl entry in a PyTorch zip checkpoint, found 0');
  });

  it('refuses a missing storage entry', async () => {
    const err = await zipError(torchZipFromParts(stateDictPickle([floatTensor('w', '7', [2])]), new Map([['0', new Uint8Array(8)]])));
    expect(err.message).toContain('tensor "w": storage entry archive/data/7 is missing');
  });

  it('refuses a non-contiguous tensor', async () => {
    const pickle = stateDictPickle([floatTensor('w', '0', [3, 4], { stride: [1, 3] })]);
    const err = await zipError(torchZipFromParts(pickle, new Map([['0', new Uint8Array(48)]])));
    expect(err.message).toContain('tensor "w" is not contiguous (shape [3, 4], stride [1, 3])');
  });

  it('accepts any stride on a size-1 dimension, as torch does', async () => {
    const pickle = stateDictPickle([floatTensor('w', '0', [1, 4], { stride: [99, 1] })]);
    await fs.writeFile(file, torchZipFromParts(pickle, new Map([['0', new Uint8Array(16)]])));
    expect((await readTorchZip(file))[0].shape).toEqual([1, 4]);
  });

  it('refuses a tensor larger than its storage', async () => {
    const pickle = stateDictPickle([floatTensor('w', '0', [4], { storageNumel: 2 })]);
    const err = await zipError(torchZipFromParts(pickle, new Map([['0', new Uint8Array(8)]])));
    expect(err.message).toContain('tensor "w": 4 elements at offset 0 do not fit its storage archive/data/0 (2 elements declared, 8 bytes stored)');
    const short = await zipError(torchZipFromParts(stateDictPickle([floatTensor('w', '0', [4])]), new Map([['0', new Uint8Array(8)]])));
    expect(short.message).toContain('(4 elements declared, 8 bytes stored)');
  });

  it('refuses big-endian checkpoints', async () => {
    const err = await zipError(torchZipBytes({ a: tensor('F32', [1], [1]) }, { byteOrder: 'big' }));
    expect(err.message).toContain('byteorder "big" is not supported');
  });

  it('refuses a pickle that is not a state dict', async () => {
    const err = await zipError(torchZipFromParts(new PickleBuilder().proto().int(3).stop().bytes(), new Map()));
    expect(err.message).toContain('data.pkl does not hold a state dict');
  });

  it('refuses a truncated zip', async () => {
    const bytes = torchZipBytes({ a: tensor('F32', [4], [1, 2, 3, 4]) });
    const err = await zipError(bytes.subarray(0, bytes.length - 30));
    expect(err.message).toContain('not a zip file');
    const cut = Uint8Array.from([...bytes.subarray(0, 100), ...bytes.subarray(bytes.length - 22)]);
    expect((await zipError(cut)).message).toMatch(/central directory (out of range|entry 0 is malformed)/);
  });
});

describeWithData('golden pytorch_model.bin', 'golden/tiny-mosaic-bin/pytorch_model.bin', () => {
  it('reads the state dict torch.save wrote, every tensor contiguous, STORED and 64-byte aligned', async () => {
    const file = sharedPath('golden', 'tiny-mosaic-bin', 'pytorch_model.bin');
    const tensors = await readTorchZip(file);
    expect(tensors).toHaveLength(18);
    expect(tensors[0]).toMatchObject({ name: 'transformer.wte.weight', dtype: 'F32', shape: [512, 96], bytes: 512 * 96 * 4 });
    expect(tensors.every((t) => t.offset % 64 === 0)).toBe(true);
  });
});
