import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loadTensorIndex } from '../lib/checkpoint/index';
import { parseShardIndex } from '../lib/checkpoint/shards';
import { loadConfig } from '../lib/config';
import { decode, makeTempDir, modelTensors, safetensorsBytes, TINY, writeModelFolder, writeSharded } from './helpers/checkpoint-writers';

describe('sharded checkpoints', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
    await writeModelFolder(dir, TINY, 'mpt', null);
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['safetensors', 'BF16', 'model.safetensors.index.json'],
    ['bin', 'F16', 'pytorch_model.bin.index.json'],
  ] as const)('%s: every tensor indexed in the shard the index names, with its bytes', async (format, dtype, indexName) => {
    const written = modelTensors(TINY, 'mpt', dtype);
    const weightMap = await writeSharded(dir, written, format, 3);
    const index = await loadTensorIndex(dir, await loadConfig(dir));
    expect(index.format).toBe(format);
    expect(index.files).toHaveLength(3);
    expect(index.files.every((f) => path.dirname(f) === dir)).toBe(true);
    expect(await fs.stat(path.join(dir, indexName))).toBeTruthy();
    for (const entry of index.tensors.values()) {
      expect(path.basename(entry.file)).toBe(weightMap[entry.sourceName]);
      const handle = await fs.open(entry.file, 'r');
      const bytes = new Uint8Array(entry.bytes);
      await handle.read(bytes, 0, entry.bytes, entry.offset);
      await handle.close();
      expect(decode(dtype, bytes)).toEqual(decode(dtype, written[entry.sourceName].data));
    }
  });

  it('prefers sharded safetensors over a single .bin', async () => {
    const written = modelTensors(TINY, 'mpt', 'F32');
    await writeSharded(dir, written, 'safetensors', 2);
    await writeSharded(dir, written, 'bin', 2);
    expect((await loadTensorIndex(dir, await loadConfig(dir))).format).toBe('safetensors');
  });

  it('refuses a tensor the index lists but its shard lacks', async () => {
    const written = modelTensors(TINY, 'mpt', 'F32');
    const weightMap = await writeSharded(dir, written, 'safetensors', 2);
    const shard = weightMap['transformer.wte.weight'];
    const rest = Object.fromEntries(Object.entries(written).filter(([name]) => weightMap[name] === shard && name !== 'transformer.wte.weight'));
    await fs.writeFile(path.join(dir, shard), safetensorsBytes(rest));
    await expect(loadTensorIndex(dir, await loadConfig(dir))).rejects.toMatchObject({
      code: 'E_CHECKPOINT',
      message: `${path.join(dir, 'model.safetensors.index.json')}: lists tensor transformer.wte.weight in ${shard}, but that shard does not contain it`,
    });
  });

  it('names a missing shard file', async () => {
    const weightMap = await writeSharded(dir, modelTensors(TINY, 'mpt', 'F32'), 'bin', 2);
    const shard = Object.values(weightMap)[0];
    await fs.rm(path.join(dir, shard));
    await expect(loadTensorIndex(dir, await loadConfig(dir))).rejects.toMatchObject({
      code: 'E_CHECKPOINT',
      message: `${path.join(dir, shard)}: file not found`,
    });
  });

  it('still checks the model: a tensor left out of the index is missing', async () => {
    await writeSharded(dir, modelTensors(TINY, 'mpt', 'F32'), 'safetensors', 2);
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await fs.readFile(indexFile, 'utf8'));
    delete index.weight_map['transformer.norm_f.weight'];
    await fs.writeFile(indexFile, JSON.stringify(index));
    await expect(loadTensorIndex(dir, await loadConfig(dir))).rejects.toMatchObject({ code: 'E_CHECKPOINT', message: expect.stringContaining('missing tensor ln_f.weight') });
  });

  it('refuses an index that is not JSON', async () => {
    await fs.writeFile(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    await expect(loadTensorIndex(dir, await loadConfig(dir))).rejects.toMatchObject({ code: 'E_CHECKPOINT', message: expect.stringContaining('model.safetensors.index.json: invalid JSON') });
  });
});

describe('parseShardIndex', () => {
  it('maps tensors to shard files', () => {
    expect(parseShardIndex({ metadata: {}, weight_map: { a: 'x.safetensors', b: 'y.safetensors' } }, 'i.json')).toEqual(
      new Map([
        ['a', 'x.safetensors'],
        ['b', 'y.safetensors'],
      ]),
    );
  });

  it.each([
    ['no weight_map', {}, 'i.json: weight_map: expected an object mapping tensor names to shard files'],
    ['weight_map an array', { weight_map: ['x'] }, 'weight_map: expected an object'],
    ['an empty weight_map', { weight_map: {} }, 'weight_map is empty'],
    ['a non-string shard', { weight_map: { a: 3 } }, 'weight_map.a: expected a shard file name in the same folder, got 3'],
    ['a shard outside the folder', { weight_map: { a: '../../etc/passwd' } }, 'weight_map.a: expected a shard file name in the same folder, got "../../etc/passwd"'],
    ['an absolute shard path', { weight_map: { a: '/etc/passwd' } }, 'got "/etc/passwd"'],
    ['a parent folder', { weight_map: { a: '..' } }, 'got ".."'],
    ['null', null, 'weight_map: expected an object'],
  ])('refuses %s', (_, json, message) => {
    expect(() => parseShardIndex(json, 'i.json')).toThrow(expect.objectContaining({ code: 'E_CHECKPOINT', message: expect.stringContaining(message) }));
  });
});
