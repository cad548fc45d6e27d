import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loadConfig, mptAlibiSlopes, parseConfig } from '../lib/config';
import { FlashMptError } from '../lib/errors';
import { makeTempDir } from './helpers/checkpoint-writers';
import { describeWithData, sharedPath } from './helpers/data';

const mpt = (over: Record<string, unknown> = {}, attn: Record<string, unknown> = {}) => ({
  model_type: 'mpt',
  d_model: 64,
  n_heads: 4,
  n_layers: 2,
  expansion_ratio: 4,
  max_seq_len: 128,
  vocab_size: 100,
  attn_config: { alibi: true, alibi_bias_max: 8, qk_ln: false, ...attn },
  ...over,
});

const mosaic = (over: Record<string, unknown> = {}) => ({
  model_type: 'mosaic_gpt',
  d_model: 64,
  n_heads: 4,
  n_layers: 2,
  mlp_ratio: 4,
  max_seq_len: 128,
  vocab_size: 100,
  alibi: true,
  ...over,
});

function configError(json: unknown): FlashMptError {
  try {
    parseConfig(json);
  } catch (err) {
    expect(err).toBeInstanceOf(FlashMptError);
    expect((err as FlashMptError).code).toBe('E_CONFIG');
    return err as FlashMptError;
  }
  throw new Error('parseConfig accepted the config');
}

describe('parseConfig: both layouts', () => {
  it('normalizes an mpt config (nested attn_config)', () => {
    const c = parseConfig(mpt({ no_bias: false, logit_scale: 0.5, torch_dtype: 'bfloat16' }, { qk_ln: true, clip_qkv: 6, softmax_scale: 0.2 }));
    expect(c).toMatchObject({
      modelType: 'mpt',
      dModel: 64,
      nHeads: 4,
      nLayers: 2,
      headDim: 16,
      dFf: 256,
      vocabSize: 100,
      maxSeqLen: 128,
      layerNormEps: 1e-5,
      qkLn: true,
      noBias: false,
      clipQkv: 6,
      softmaxScale: 0.2,
      logitScale: 0.5,
      alibi: true,
      alibiBiasMax: 8,
      torchDtype: 'bfloat16',
    });
  });

  it('normalizes a mosaic_gpt config (flat) to the same values as the equivalent mpt config', () => {
    const fromMosaic = parseConfig(mosaic({ attn_qk_ln: true, attn_clip_qkv: 6, no_bias: true }));
    const fromMpt = parseConfig(mpt({ no_bias: true }, { qk_ln: true, clip_qkv: 6 }));
    expect({ ...fromMosaic, modelType: 'mpt' }).toEqual(fromMpt);
  });

  it('applies each library’s defaults for fields left out', () => {
    const bare = { d_model: 32, n_heads: 2, n_layers: 1, max_seq_len: 16, vocab_size: 10 };
    const m = parseConfig({ model_type: 'mpt', ...bare });
    expect(m).toMatchObject({ dFf: 128, qkLn: false, noBias: true, alibi: true, alibiBiasMax: 8, clipQkv: null, logitScale: 1, layerNormEps: 1e-5, torchDtype: null });
    const g = parseConfig({ model_type: 'mosaic_gpt', alibi: true, ...bare });
    expect(g).toMatchObject({ dFf: 128, qkLn: false, noBias: false, alibiBiasMax: 8 });
  });

  it('resolves softmax_scale, logit_scale and clip_qkv', () => {
    expect(parseConfig(mpt()).softmaxScale).toBeCloseTo(1 / Math.sqrt(16), 12);
    expect(parseConfig(mpt({ logit_scale: 'inv_sqrt_d_model' })).logitScale).toBeCloseTo(1 / 8, 12);
    expect(parseConfig(mpt({ logit_scale: null })).logitScale).toBe(1);
    expect(parseConfig(mpt({}, { clip_qkv: 0 })).clipQkv).toBeNull();
    expect(parseConfig(mosaic({ layer_norm_epsilon: 1e-6 })).layerNormEps).toBe(1e-6);
  });

  it('truncates a fractional MLP ratio as llm-foundry does', () => {
    expect(parseConfig(mpt({ expansion_ratio: 2.5, d_model: 30, n_heads: 3 })).dFf).toBe(75);
    expect(parseConfig(mpt({ expansion_ratio: 1.01, d_model: 30, n_heads: 3 })).dFf).toBe(30);
  });

  it('accepts a model without position information when learned_pos_emb is off', () => {
    const c = parseConfig(mpt({ learned_pos_emb: false }, { alibi: false }));
    expect(c.alibi).toBe(false);
    expect(c.alibiSlopes).toHaveLength(0);
  });
});

describe('ALiBi slopes (transformers build_mpt_alibi_tensor)', () => {
  it('are 2^(-8h/H) for a power-of-two head count', () => {
    expect(Array.from(mptAlibiSlopes(16, 8))).toEqual(Array.from({ length: 16 }, (_, h) => Math.fround(2 ** (-(h + 1) / 2))));
    expect(Array.from(mptAlibiSlopes(1, 8))).toEqual([2 ** -8]);
    expect(Array.from(mptAlibiSlopes(4, 16))).toEqual([2 ** -4, 2 ** -8, 2 ** -12, 2 ** -16]);
  });

  it('interleave the next power of two otherwise: odd positions first, then even, cut to H', () => {
    // H = 3: n = 4, slopes 2^-2, 2^-4, 2^-6, 2^-8 → [2^-4, 2^-8, 2^-2]
    expect(Array.from(mptAlibiSlopes(3, 8))).toEqual([2 ** -4, 2 ** -8, 2 ** -2]);
    // H = 6: n = 8, slopes 2^-1 … 2^-8 → [2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3]
    expect(Array.from(mptAlibiSlopes(6, 8))).toEqual([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]);
  });

  it('are rounded to float32 like torch, for a bias max that is not a power of two', () => {
    const slopes = mptAlibiSlopes(5, 7);
    const step = Math.fround(7 / 8);
    const all = Array.from({ length: 8 }, (_, k) => Math.fround(1 / Math.fround(2 ** Math.fround((k + 1) * step))));
    expect(Array.from(slopes)).toEqual([all[1], all[3], all[5], all[7], all[0]]);
  });

  it('come with the parsed config', () => {
    expect(parseConfig(mpt({ n_heads: 16, d_model: 256 })).alibiSlopes).toEqual(mptAlibiSlopes(16, 8));
    expect(parseConfig(mosaic({ alibi_bias_max: 4 })).alibiSlopes).toEqual(mptAlibiSlopes(4, 4));
  });
});

describe('parseConfig: errors name the file and the field', () => {
  it.each([
    ['missing n_heads', mpt({ n_heads: undefined }), 'config.json: n_heads: missing (expected a positive integer)'],
    ['n_heads as a string', mpt({ n_heads: '4' }), 'config.json: n_heads: expected a positive integer, got "4"'],
    ['fractional d_model', mpt({ d_model: 64.5 }), 'd_model: expected a positive integer'],
    ['zero layers', mosaic({ n_layers: 0 }), 'n_layers: expected a positive integer'],
    ['negative vocab', mosaic({ vocab_size: -3 }), 'vocab_size: expected a positive integer'],
    ['ill-typed nested flag', mpt({}, { qk_ln: 'yes' }), 'attn_config.qk_ln: expected true or false'],
    ['ill-typed flat flag', mosaic({ attn_qk_ln: 1 }), 'attn_qk_ln: expected true or false'],
    ['attn_config not an object', mpt({ attn_config: [] }), 'attn_config: expected a JSON object'],
    ['negative clip', mpt({}, { clip_qkv: -1 }), 'attn_config.clip_qkv: expected a non-negative number or null'],
    ['bad logit_scale', mpt({ logit_scale: 'big' }), 'logit_scale: expected a positive number, "inv_sqrt_d_model" or null'],
    ['bad torch_dtype', mpt({ torch_dtype: 'float64' }), 'torch_dtype: expected "float32", "float16" or "bfloat16"'],
    ['unknown model_type', mpt({ model_type: 'gpt2' }), 'model_type: expected "mpt" or "mosaic_gpt"'],
    ['missing model_type', mpt({ model_type: undefined }), 'model_type: missing'],
    ['not an object', [1, 2], '(top level): expected a JSON object'],
    ['null', null, '(top level): expected a JSON object'],
    ['heads not dividing d_model', mpt({ n_heads: 5 }), 'd_model: 64 is not divisible by n_heads 5'],
  ])('%s', (_, json, message) => {
    expect(configError(json).message).toContain(message);
  });

  it.each([
    ['prefix_lm (mpt)', mpt({}, { prefix_lm: true }), 'attn_config.prefix_lm: unsupported'],
    ['prefix_lm (mosaic_gpt)', mosaic({ prefix_lm: true }), 'prefix_lm: unsupported'],
    ['sequence ids', mosaic({ attn_uses_sequence_id: true }), 'attn_uses_sequence_id: unsupported'],
    ['grouped-query attention', mpt({}, { attn_type: 'grouped_query_attention' }), 'attn_config.attn_type: unsupported'],
    ['no ALiBi (mosaic_gpt)', mosaic({ alibi: false }), 'alibi: unsupported: without ALiBi the model needs learned position embeddings (wpe)'],
    ['no ALiBi (mosaic_gpt default)', mosaic({ alibi: undefined }), 'alibi: unsupported'],
    ['no ALiBi (mpt)', mpt({}, { alibi: false }), 'attn_config.alibi: unsupported'],
    ['RMSNorm', mpt({ norm_type: 'rmsnorm' }), 'norm_type: unsupported'],
    ['GLU MLP', mpt({ ffn_config: { ffn_type: 'mptglu' } }), 'ffn_config.ffn_type: unsupported'],
    ['rotary embeddings', mpt({}, { rope: true }), 'attn_config.rope: unsupported'],
    ['sliding window', mpt({}, { sliding_window_size: 32 }), 'attn_config.sliding_window_size: unsupported'],
    ['untied head', mpt({ tie_word_embeddings: false }), 'tie_word_embeddings: unsupported'],
  ])('refuses %s', (_, json, message) => {
    expect(configError(json).message).toContain(message);
  });

  it('uses the given source name', () => {
    expect(() => parseConfig(mpt({ n_layers: 'two' }), '/models/x/config.json')).toThrow('/models/x/config.json: n_layers:');
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir('flash-mpt-config-');
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('reads dir/config.json and names that path in errors', async () => {
    await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(mpt({ d_model: 'wide' })));
    await expect(loadConfig(dir)).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringContaining(`${path.join(dir, 'config.json')}: d_model:`) });
  });

  it('reports a missing file', async () => {
    await expect(loadConfig(dir)).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/config\.json: cannot read config: not found/) });
  });

  it('reports invalid JSON', async () => {
    await fs.writeFile(path.join(dir, 'config.json'), '{"d_model": 64,');
    await expect(loadConfig(dir)).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringContaining('config.json: invalid JSON') });
  });
});

for (const golden of ['tiny-mpt-bf16', 'tiny-mosaic-fp32', 'tiny-mosaic-bin']) {
  describeWithData(`golden config ${golden}`, `golden/${golden}/config.json`, () => {
    it('loads with the values config.json states', async () => {
      const dir = sharedPath('golden', golden);
      const json = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
      const c = await loadConfig(dir);
      const attn = json.attn_config ?? {};
      expect(c.modelType).toBe(json.model_type);
      expect(c).toMatchObject({
        dModel: json.d_model,
        nHeads: json.n_heads,
        nLayers: json.n_layers,
        headDim: json.d_model / json.n_heads,
        dFf: json.d_model * (json.expansion_ratio ?? json.mlp_ratio),
        vocabSize: json.vocab_size,
        maxSeqLen: json.max_seq_len,
        qkLn: attn.qk_ln ?? json.attn_qk_ln,
        noBias: json.no_bias,
        clipQkv: null,
        logitScale: 1,
        alibi: true,
        torchDtype: json.torch_dtype,
      });
      expect(c.softmaxScale).toBeCloseTo(1 / Math.sqrt(json.d_model / json.n_heads), 12);
      expect(c.alibiSlopes).toEqual(mptAlibiSlopes(json.n_heads, 8));
    });
  });
}
