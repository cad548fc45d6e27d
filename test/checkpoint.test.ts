import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loadTensorIndex, type TensorEntry, type TensorIndex } from '../lib/checkpoint/index';
import { canonicalName, expectedTensors } from '../lib/checkpoint/names';
import { loadConfig, type MptConfig, parseConfig } from '../lib/config';
import {
  configJson,
  decode,
  type FloatDType,
  type Layout,
  makeTempDir,
  modelTensors,
  safetensorsBytes,
  tensor,
  type TensorSpec,
  TINY,
  type TinyModel,
  torchZipBytes,
  writeModelFolder,
} from './helpers/checkpoint-writers';
import { describeWithData, sharedPath } from './helpers/data';

async function readEntry(entry: TensorEntry): Promise<Uint8Array> {
  const handle = await fs.open(entry.file, 'r');
  try {
    const bytes = new Uint8Array(entry.bytes);
    await handle.read(bytes, 0, entry.bytes, entry.offset);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Every tensor in the index holds exactly the bytes the writer put under its source name. */
async function expectBytesMatch(index: TensorIndex, written: Record<string, TensorSpec>): Promise<void> {
  for (const entry of index.tensors.values()) {
    const source = written[entry.sourceName];
    expect(source).toBeDefined();
    expect(entry.dtype).toBe(source.dtype);
    expect(entry.shape).toEqual(source.shape);
    expect(decode(entry.dtype, await readEntry(entry))).toEqual(decode(entry.dtype, source.data));
  }
}

describe('canonical names', () => {
  it.each([
    ['transformer.wte.weight', 'wte.weight'],
    ['wte.weight', 'wte.weight'],
    ['transformer.ln_f.weight', 'ln_f.weight'],
    ['transformer.norm_f.bias', 'ln_f.bias'],
    ['transformer.blocks.3.ln_1.weight', 'blocks.3.ln_1.weight'],
    ['transformer.blocks.3.norm_1.weight', 'blocks.3.ln_1.weight'],
    ['blocks.0.norm_2.bias', 'blocks.0.ln_2.bias'],
    ['transformer.blocks.1.attn.Wqkv.weight', 'blocks.1.attn.Wqkv.weight'],
    ['transformer.blocks.1.attn.q_ln.weight', 'blocks.1.attn.q_ln.weight'],
    ['transformer.blocks.1.attn.k_ln.bias', 'blocks.1.attn.k_ln.bias'],
    ['transformer.blocks.1.attn.out_proj.weight', 'blocks.1.attn.out_proj.weight'],
    ['transformer.blocks.2.mlp.mlp_up.weight', 'blocks.2.mlp.up.weight'],
    ['transformer.blocks.2.ffn.up_proj.weight', 'blocks.2.mlp.up.weight'],
    ['transformer.blocks.2.mlp.mlp_down.bias', 'blocks.2.mlp.down.bias'],
    ['transformer.blocks.2.ffn.down_proj.weight', 'blocks.2.mlp.down.weight'],
  ])('%s → %s', (source, canonical) => {
    expect(canonicalName(source)).toBe(canonical);
  });

  it.each(['lm_head.weight', 'transformer.blocks.0.attn.masked_bias', 'transformer.blocks.0.attn.bias', 'transformer.wte.bias', 'transformer.wpe.weight', '__proto__.weight', 'weight'])(
    'ignores %s',
    (source) => {
      expect(canonicalName(source)).toBeNull();
    },
  );

  it('lists the tensors a config needs with their shapes', () => {
    const config = parseConfig(configJson({ ...TINY, noBias: false, qkLn: false }, 'mpt'));
    const expected = expectedTensors(config);
    expect(expected.get('wte.weight')).toEqual([40, 16]);
    expect(expected.get('blocks.1.attn.Wqkv.weight')).toEqual([48, 16]);
    expect(expected.get('blocks.1.attn.Wqkv.bias')).toEqual([48]);
    expect(expected.get('blocks.0.mlp.up.weight')).toEqual([64, 16]);
    expect(expected.get('blocks.0.mlp.down.weight')).toEqual([16, 64]);
    expect(expected.get('blocks.0.mlp.down.bias')).toEqual([16]);
    expect(expected.has('blocks.0.attn.q_ln.weight')).toBe(false);
    // per block: 2 norms, 4 linears, each with a bias; plus wte and ln_f (weight, bias)
    expect(expected.size).toBe(2 * 12 + 3);
  });
});

describe('loadTensorIndex: formats, dtypes and layouts', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, TinyModel, Layout, FloatDType, 'safetensors' | 'bin']> = [];
  for (const layout of ['mpt', 'mosaic_gpt'] as const) {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      for (const format of ['safetensors', 'bin'] as const) cases.push([`${layout} ${dtype} ${format}`, TINY, layout, dtype, format]);
    }
  }
  cases.push(['mpt F32 bin, biases, no QK-LN', { ...TINY, noBias: false, qkLn: false }, 'mpt', 'F32', 'bin']);
  cases.push(['mosaic_gpt BF16 safetensors, biases, 3 heads', { ...TINY, dModel: 24, nHeads: 3, noBias: false }, 'mosaic_gpt', 'BF16', 'safetensors']);

  it.each(cases)('%s: canonical names, shapes, and the bytes at each offset', async (_, model, layout, dtype, format) => {
    const written = modelTensors(model, layout, dtype);
    const file = format === 'safetensors' ? 'model.safetensors' : 'pytorch_model.bin';
    await writeModelFolder(dir, model, layout, { file, bytes: format === 'safetensors' ? safetensorsBytes(written) : torchZipBytes(written) });
    const config = await loadConfig(dir);
    const index = await loadTensorIndex(dir, config);
    expect(index.format).toBe(format);
    expect(index.files).toEqual([path.join(dir, file)]);
    expect([...index.tensors.keys()].sort()).toEqual([...expectedTensors(config).keys()].sort());
    for (const [name, entry] of index.tensors) {
      expect(entry.name).toBe(name);
      expect(entry.file).toBe(path.join(dir, file));
      expect(entry.bytes).toBe(entry.shape.reduce((a, b) => a * b, 1) * (dtype === 'F32' ? 4 : 2));
    }
    await expectBytesMatch(index, written);
  });

  it('accepts names without the transformer. prefix, and ignores lm_head and buffers', async () => {
    const written: Record<string, TensorSpec> = {};
    for (const [name, t] of Object.entries(modelTensors(TINY, 'mpt', 'F32'))) written[name.replace(/^transformer\./, '')] = t;
    written['lm_head.weight'] = written['wte.weight'];
    written['transformer.blocks.0.attn.masked_bias'] = tensor('F32', [1], [-1e4]);
    await writeModelFolder(dir, TINY, 'mpt', { file: 'model.safetensors', bytes: safetensorsBytes(written) });
    const index = await loadTensorIndex(dir, await loadConfig(dir));
    expect(index.tensors.get('wte.weight')?.sourceName).toBe('wte.weight');
    expect(index.tensors.has('lm_head.weight')).toBe(false);
    await expectBytesMatch(index, written);
  });

  it('prefers model.safetensors over pytorch_model.bin', async () => {
    const written = modelTensors(TINY, 'mpt', 'F16');
    await writeModelFolder(dir, TINY, 'mpt', { file: 'pytorch_model.bin', bytes: torchZipBytes(written) });
    await fs.writeFile(path.join(dir, 'model.safetensors'), safetensorsBytes(written));
    const index = await loadTensorIndex(dir, await loadConfig(dir));
    expect(index.format).toBe('safetensors');
    expect(index.files).toEqual([path.join(dir, 'model.safetensors')]);
  });
});

describe('loadTensorIndex: validation against the config', () => {
  let dir: string;
  let config: MptConfig;
  beforeEach(async () => {
    dir = await makeTempDir();
    config = parseConfig(configJson(TINY, 'mosaic_gpt'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function indexError(tensors: Record<string, TensorSpec>, cfg: MptConfig = config): Promise<Error & { code?: string }> {
    await fs.writeFile(path.join(dir, 'model.safetensors'), safetensorsBytes(tensors));
    return loadTensorIndex(dir, cfg).then(
      () => {
        throw new Error('loadTensorIndex accepted the checkpoint');
      },
      (err: Error & { code?: string }) => err,
    );
  }

  it('says which files it looked for when there are no weights', async () => {
    await expect(loadTensorIndex(dir, config)).rejects.toMatchObject({
      code: 'E_CHECKPOINT',
      message: expect.stringContaining(
        'no weights found; looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json',
      ),
    });
  });

  it('names a missing tensor', async () => {
    const tensors = modelTensors(TINY, 'mosaic_gpt', 'F32');
    delete tensors['transformer.blocks.1.attn.q_ln.weight'];
    const err = await indexError(tensors);
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain('missing tensor blocks.1.attn.q_ln.weight');
  });

  it('lists several missing tensors', async () => {
    const tensors = modelTensors(TINY, 'mosaic_gpt', 'F32');
    delete tensors['transformer.ln_f.weight'];
    delete tensors['transformer.wte.weight'];
    expect((await indexError(tensors)).message).toMatch(/missing tensors (wte\.weight, ln_f\.weight|ln_f\.weight, wte\.weight)/);
  });

  it('requires biases when no_bias is false', async () => {
    const withBias = parseConfig(configJson({ ...TINY, noBias: false }, 'mosaic_gpt'));
    expect((await indexError(modelTensors(TINY, 'mosaic_gpt', 'F32'), withBias)).message).toContain('missing tensors blocks.0.ln_1.bias');
  });

  it('names the tensor, the expected and the actual shape', async () => {
    const tensors = modelTensors(TINY, 'mosaic_gpt', 'F32');
    tensors['transformer.blocks.0.attn.Wqkv.weight'] = tensor('F32', [16, 48], new Float32Array(768));
    const err = await indexError(tensors);
    expect(err.code).toBe('E_CHECKPOINT');
    expect(err.message).toContain('tensor transformer.blocks.0.attn.Wqkv.weight has shape [16, 48], expected [48, 16]');
  });

  it('refuses a tensor dtype the engine cannot use', async () => {
    const tensors = modelTensors(TINY, 'mosaic_gpt', 'F32');
    tensors['transformer.ln_f.weight'] = { dtype: 'F64', shape: [16], data: new Uint8Array(128) };
    expect((await indexError(tensors)).message).toContain('tensor transformer.ln_f.weight has dtype F64; only F32, F16 and BF16 are supported');
  });

  it('ignores an unused tensor of another dtype', async () => {
    const tensors = modelTensors(TINY, 'mosaic_gpt', 'F32');
    tensors['transformer.blocks.0.attn.bias'] = { dtype: 'BOOL', shape: [1, 1, 4, 4], data: new Uint8Array(16) };
    await fs.writeFile(path.join(dir, 'model.safetensors'), safetensorsBytes(tensors));
    expect((await loadTensorIndex(dir, config)).tensors.size).toBe(expectedTensors(config).size);
  });

  it('refuses tensors the config says the model does not have', async () => {
    const noQkLn = parseConfig(configJson({ ...TINY, qkLn: false }, 'mosaic_gpt'));
    expect((await indexError(modelTensors(TINY, 'mosaic_gpt', 'F32'), noQkLn)).message).toMatch(
      /tensor transformer\.blocks\.0\.attn\.q_ln\.weight \(blocks\.0\.attn\.q_ln\.weight\) does not belong to the model config\.json describes .*qk_ln false/,
    );
    const oneLayer = parseConfig(configJson({ ...TINY, nLayers: 1 }, 'mosaic_gpt'));
    expect((await indexError(modelTensors(TINY, 'mosaic_gpt', 'F32'), oneLayer)).message).toContain('(blocks.1.');
  });

  it('refuses two tensors that map to one name', async () => {
    const tensors = modelTensors(TINY, 'mosaic_gpt', 'F32');
    tensors['transformer.norm_f.weight'] = tensors['transformer.ln_f.weight'];
    expect((await indexError(tensors)).message).toContain('tensors transformer.ln_f.weight and transformer.norm_f.weight both name ln_f.weight');
  });
});

const GOLDENS: Array<[string, 'safetensors' | 'bin', 'F32' | 'BF16']> = [
  ['tiny-mpt-bf16', 'safetensors', 'BF16'],
  ['tiny-mosaic-fp32', 'safetensors', 'F32'],
  ['tiny-mosaic-bin', 'bin', 'F32'],
];

for (const [golden, format, dtype] of GOLDENS) {
  describeWithData(`golden checkpoint ${golden}`, `golden/${golden}/config.json`, () => {
    const dir = sharedPath('golden', golden);

    it('indexes every tensor the config needs with the right shape and dtype', async () => {
      const config = await loadConfig(dir);
      const index = await loadTensorIndex(dir, config);
      expect(index.format).toBe(format);
      expect(index.files).toHaveLength(1);
      const expected = expectedTensors(config);
      expect([...index.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
      const { size } = await fs.stat(index.files[0]);
      for (const entry of index.tensors.values()) {
        expect(entry.shape).toEqual(expected.get(entry.name));
        expect(entry.dtype).toBe(dtype);
        expect(entry.sourceName.startsWith('transformer.')).toBe(true);
        expect(entry.offset + entry.bytes).toBeLessThanOrEqual(size);
      }
    });

    it('points at the right bytes: norm weights read back near the oracle’s 1 (and q/k norms near 5)', async () => {
      // mpt_oracle.py draws LayerNorm weights as 1 + 0.2·N(0,1), QK-LN weights as 5·(1 + 0.2·N(0,1)); any
      // misplaced offset would read matrix entries (mean ≈ 0) or bytes of another tensor instead.
      const config = await loadConfig(dir);
      const index = await loadTensorIndex(dir, config);
      for (const entry of index.tensors.values()) {
        if (entry.shape.length !== 1) continue;
        const values = decode(entry.dtype, await readEntry(entry));
        const mean = values.reduce((a, b) => a + b, 0) / values.length;
        const centre = /\.(q_ln|k_ln)\./.test(entry.name) ? 5 : 1;
        expect(Math.abs(mean - centre)).toBeLessThan(0.1 * centre);
        expect(values.every((v) => Number.isFinite(v) && Math.abs(v - centre) < centre)).toBe(true);
      }
    });
  });
}
