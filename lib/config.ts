/**
 * config.json of either MPT layout (DESIGN.md §1) → one normalized MptConfig.
 *
 * `mosaic_gpt` (MosaicML examples v0.0.4) is flat; `mpt` (transformers / llm-foundry) nests the attention
 * settings in `attn_config`. Defaults follow each layout's own library so a config that leaves a field out
 * means what it meant to the code that wrote it. Features the engine does not implement are refused with
 * E_CONFIG rather than silently computed wrong.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { FlashMptError } from './errors';

export interface MptConfig {
  modelType: 'mpt' | 'mosaic_gpt';
  dModel: number;
  nHeads: number;
  nLayers: number;
  headDim: number;
  dFf: number;
  vocabSize: number;
  maxSeqLen: number;
  layerNormEps: number;
  qkLn: boolean;
  noBias: boolean;
  clipQkv: number | null;
  /** resolved: 1/sqrt(headDim) when the config says null */
  softmaxScale: number;
  /** resolved: 1 when the config says null */
  logitScale: number;
  alibi: boolean;
  alibiBiasMax: number;
  /** nHeads slopes by transformers' MPT rule; empty when !alibi */
  alibiSlopes: Float32Array;
  torchDtype: 'float32' | 'float16' | 'bfloat16' | null;
}

/** Field errors read "expected X" (or "missing (expected X)") so the message names what a fix looks like. */
function expecting(what: string) {
  return {
    error: (issue: { input?: unknown }) =>
      issue.input === undefined ? `missing (expected ${what})` : `expected ${what}, got ${JSON.stringify(issue.input)}`,
  };
}

const positiveInt = z.int(expecting('a positive integer')).positive(expecting('a positive integer'));
const positiveNumber = z.number(expecting('a positive number')).positive(expecting('a positive number'));
const flag = z.boolean(expecting('true or false'));
const nonNegativeOrNull = z
  .number(expecting('a non-negative number or null'))
  .nonnegative(expecting('a non-negative number or null'))
  .nullable();
const positiveOrNull = z.number(expecting('a positive number or null')).positive(expecting('a positive number or null')).nullable();
const logitScaleField = z.union([z.number().positive(), z.literal('inv_sqrt_d_model'), z.null()], {
  error: (issue) =>
    `expected a positive number, "inv_sqrt_d_model" or null, got ${JSON.stringify((issue as { input?: unknown }).input)}`,
});
const torchDtypeField = z.enum(['float32', 'float16', 'bfloat16'], expecting('"float32", "float16" or "bfloat16"')).nullable();

/** Fields both layouts spell the same way. */
const sharedFields = {
  d_model: positiveInt,
  n_heads: positiveInt,
  n_layers: positiveInt,
  vocab_size: positiveInt,
  max_seq_len: positiveInt,
  layer_norm_epsilon: positiveNumber.optional(),
  logit_scale: logitScaleField.optional(),
  torch_dtype: torchDtypeField.optional(),
  tie_word_embeddings: flag.optional(),
};

const mosaicGptSchema = z.object(
  {
    ...sharedFields,
    model_type: z.literal('mosaic_gpt'),
    mlp_ratio: positiveNumber.optional(),
    attn_qk_ln: flag.optional(),
    attn_clip_qkv: nonNegativeOrNull.optional(),
    softmax_scale: positiveOrNull.optional(),
    alibi: flag.optional(),
    alibi_bias_max: positiveNumber.optional(),
    no_bias: flag.optional(),
    prefix_lm: flag.optional(),
    attn_uses_sequence_id: flag.optional(),
  },
  expecting('a JSON object'),
);

const mptAttnConfigSchema = z.object(
  {
    attn_type: z.string(expecting('a string')).optional(),
    qk_ln: flag.optional(),
    clip_qkv: nonNegativeOrNull.optional(),
    softmax_scale: positiveOrNull.optional(),
    alibi: flag.optional(),
    alibi_bias_max: positiveNumber.optional(),
    prefix_lm: flag.optional(),
    attn_uses_sequence_id: flag.optional(),
    rope: flag.optional(),
    sliding_window_size: z.int(expecting('an integer or null')).nullable().optional(),
  },
  expecting('a JSON object'),
);

const mptSchema = z.object(
  {
    ...sharedFields,
    model_type: z.literal('mpt'),
    expansion_ratio: positiveNumber.optional(),
    no_bias: flag.optional(),
    norm_type: z.string(expecting('a string')).optional(),
    learned_pos_emb: flag.optional(),
    attn_config: mptAttnConfigSchema.optional(),
    ffn_config: z.object({ ffn_type: z.string(expecting('a string')).optional() }, expecting('a JSON object')).optional(),
  },
  expecting('a JSON object'),
);

const modelTypeSchema = z.object(
  { model_type: z.enum(['mpt', 'mosaic_gpt'], expecting('"mpt" or "mosaic_gpt"')) },
  expecting('a JSON object'),
);

function sharedUnsupported(c: { tie_word_embeddings?: boolean }): Array<[string, string]> {
  return c.tie_word_embeddings === false ? [['tie_word_embeddings', 'an untied LM head is not supported']] : [];
}

/** The layout-independent view, before derived values are resolved. */
interface RawConfig {
  modelType: 'mpt' | 'mosaic_gpt';
  dModel: number;
  nHeads: number;
  nLayers: number;
  vocabSize: number;
  maxSeqLen: number;
  ffnRatio: number;
  layerNormEps: number;
  qkLn: boolean;
  noBias: boolean;
  clipQkv: number | null;
  softmaxScale: number | null;
  logitScale: number | 'inv_sqrt_d_model' | null;
  alibi: boolean;
  alibiBiasMax: number;
  torchDtype: MptConfig['torchDtype'];
  /** features the engine lacks, each as [json path, why]; the first one present is reported */
  unsupported: Array<[string, string]>;
  /** JSON name of the MLP ratio, for its error message */
  ffnRatioField: string;
}

function fail(source: string, field: string, message: string): never {
  throw new FlashMptError('E_CONFIG', `${source}: ${field}: ${message}`, { details: { source, field } });
}

function parseWith<T>(schema: z.ZodType<T>, json: unknown, source: string): T {
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  fail(source, issue.path.length > 0 ? issue.path.join('.') : '(top level)', issue.message);
}

function fromMosaicGpt(c: z.infer<typeof mosaicGptSchema>): RawConfig {
  const alibi = c.alibi ?? false; // MosaicGPTConfig's default: learned position embeddings
  const unsupported = sharedUnsupported(c);
  if (c.prefix_lm) unsupported.push(['prefix_lm', 'prefix-LM attention is not supported']);
  if (c.attn_uses_sequence_id) unsupported.push(['attn_uses_sequence_id', 'sequence-id attention masking is not supported']);
  if (!alibi) unsupported.push(['alibi', 'without ALiBi the model needs learned position embeddings (wpe), which are not supported']);
  return {
    modelType: 'mosaic_gpt',
    dModel: c.d_model,
    nHeads: c.n_heads,
    nLayers: c.n_layers,
    vocabSize: c.vocab_size,
    maxSeqLen: c.max_seq_len,
    ffnRatio: c.mlp_ratio ?? 4,
    layerNormEps: c.layer_norm_epsilon ?? 1e-5,
    qkLn: c.attn_qk_ln ?? false,
    noBias: c.no_bias ?? false,
    clipQkv: c.attn_clip_qkv ?? null,
    softmaxScale: c.softmax_scale ?? null,
    logitScale: c.logit_scale ?? null,
    alibi,
    alibiBiasMax: c.alibi_bias_max ?? 8,
    torchDtype: c.torch_dtype ?? null,
    unsupported,
    ffnRatioField: 'mlp_ratio',
  };
}

function fromMpt(c: z.infer<typeof mptSchema>): RawConfig {
  const attn = c.attn_config ?? {};
  const alibi = attn.alibi ?? true; // transformers' MptAttentionConfig default
  const unsupported = sharedUnsupported(c);
  const attnType = attn.attn_type ?? 'multihead_attention';
  if (attnType !== 'multihead_attention') {
    unsupported.push(['attn_config.attn_type', `"${attnType}" is not supported (only "multihead_attention")`]);
  }
  if (attn.prefix_lm) unsupported.push(['attn_config.prefix_lm', 'prefix-LM attention is not supported']);
  if (attn.attn_uses_sequence_id) {
    unsupported.push(['attn_config.attn_uses_sequence_id', 'sequence-id attention masking is not supported']);
  }
  if (attn.rope) unsupported.push(['attn_config.rope', 'rotary position embeddings are not supported']);
  if (attn.sliding_window_size != null && attn.sliding_window_size > 0 && attn.sliding_window_size < c.max_seq_len) {
    unsupported.push(['attn_config.sliding_window_size', 'sliding-window attention is not supported']);
  }
  // llm-foundry makes learned position embeddings unless told not to; without ALiBi they would be needed.
  if (!alibi && c.learned_pos_emb !== false) {
    unsupported.push(['attn_config.alibi', 'without ALiBi the model needs learned position embeddings (wpe), which are not supported']);
  }
  const normType = c.norm_type ?? 'low_precision_layernorm';
  if (normType !== 'layernorm' && normType !== 'low_precision_layernorm') {
    unsupported.push(['norm_type', `"${normType}" is not supported (only LayerNorm)`]);
  }
  const ffnType = c.ffn_config?.ffn_type ?? 'mptmlp';
  if (ffnType !== 'mptmlp') unsupported.push(['ffn_config.ffn_type', `"${ffnType}" is not supported (only "mptmlp")`]);
  return {
    modelType: 'mpt',
    dModel: c.d_model,
    nHeads: c.n_heads,
    nLayers: c.n_layers,
    vocabSize: c.vocab_size,
    maxSeqLen: c.max_seq_len,
    ffnRatio: c.expansion_ratio ?? 4,
    layerNormEps: c.layer_norm_epsilon ?? 1e-5,
    qkLn: attn.qk_ln ?? false,
    noBias: c.no_bias ?? true,
    clipQkv: attn.clip_qkv ?? null,
    softmaxScale: attn.softmax_scale ?? null,
    logitScale: c.logit_scale ?? null,
    alibi,
    alibiBiasMax: attn.alibi_bias_max ?? 8,
    torchDtype: c.torch_dtype ?? null,
    unsupported,
    ffnRatioField: 'expansion_ratio',
  };
}

/**
 * ALiBi slopes as transformers' `build_mpt_alibi_tensor` makes them: for n = next power of two ≥ H,
 * slope_k = 2^(-k·max/n), k = 1..n; when n ≠ H the odd-indexed slopes come first, then the even ones, cut to H.
 * Each step is rounded to float32 as torch computes it in float32.
 */
export function mptAlibiSlopes(nHeads: number, alibiBiasMax: number): Float32Array {
  const n = 2 ** Math.ceil(Math.log2(nHeads));
  const step = Math.fround(alibiBiasMax / n);
  const slopes: number[] = [];
  for (let k = 1; k <= n; k++) slopes.push(Math.fround(1 / Math.fround(2 ** Math.fround(k * step))));
  const ordered = n === nHeads ? slopes : [...slopes.filter((_, i) => i % 2 === 1), ...slopes.filter((_, i) => i % 2 === 0)];
  return Float32Array.from(ordered.slice(0, nHeads));
}

/** Validates either layout (`source` names the file in error messages) and resolves derived values. */
export function parseConfig(json: unknown, source = 'config.json'): MptConfig {
  const { model_type: modelType } = parseWith(modelTypeSchema, json, source);
  const raw = modelType === 'mpt' ? fromMpt(parseWith(mptSchema, json, source)) : fromMosaicGpt(parseWith(mosaicGptSchema, json, source));

  const [unsupportedField, why] = raw.unsupported[0] ?? [];
  if (unsupportedField !== undefined) fail(source, unsupportedField, `unsupported: ${why}`);
  if (raw.dModel % raw.nHeads !== 0) {
    fail(source, 'd_model', `${raw.dModel} is not divisible by n_heads ${raw.nHeads}`);
  }
  // llm-foundry sizes the MLP as int(d_model * ratio).
  const dFf = Math.trunc(raw.dModel * raw.ffnRatio);
  if (dFf < 1) fail(source, raw.ffnRatioField, `${raw.ffnRatio} × d_model ${raw.dModel} gives no MLP units`);

  const headDim = raw.dModel / raw.nHeads;
  const logitScale =
    raw.logitScale === null ? 1 : raw.logitScale === 'inv_sqrt_d_model' ? 1 / Math.sqrt(raw.dModel) : raw.logitScale;
  return {
    modelType: raw.modelType,
    dModel: raw.dModel,
    nHeads: raw.nHeads,
    nLayers: raw.nLayers,
    headDim,
    dFf,
    vocabSize: raw.vocabSize,
    maxSeqLen: raw.maxSeqLen,
    layerNormEps: raw.layerNormEps,
    qkLn: raw.qkLn,
    noBias: raw.noBias,
    // clip_qkv 0 disables clipping in both libraries (`if clip_qkv:`).
    clipQkv: raw.clipQkv === 0 ? null : raw.clipQkv,
    softmaxScale: raw.softmaxScale ?? 1 / Math.sqrt(headDim),
    logitScale,
    alibi: raw.alibi,
    alibiBiasMax: raw.alibiBiasMax,
    alibiSlopes: raw.alibi ? mptAlibiSlopes(raw.nHeads, raw.alibiBiasMax) : new Float32Array(0),
    torchDtype: raw.torchDtype,
  };
}

/** Reads and parses `dir/config.json`; every failure is E_CONFIG naming the file. */
export async function loadConfig(dir: string): Promise<MptConfig> {
  const file = path.resolve(dir, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message;
    throw new FlashMptError('E_CONFIG', `${file}: cannot read config: ${reason}`, { cause: err, details: { source: file } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FlashMptError('E_CONFIG', `${file}: invalid JSON: ${(err as Error).message}`, { cause: err, details: { source: file } });
  }
  return parseConfig(json, file);
}
