/**
 * Canonical tensor names (csrc/engine/engine.h) from either checkpoint layout, and the set of tensors,
 * with shapes, that a config requires.
 */
import type { MptConfig } from '../config';

/** Module paths inside `blocks.{i}.`, mosaic_gpt and mpt spellings both. */
const BLOCK_MODULES = new Map([
  ['ln_1', 'ln_1'],
  ['norm_1', 'ln_1'],
  ['ln_2', 'ln_2'],
  ['norm_2', 'ln_2'],
  ['attn.Wqkv', 'attn.Wqkv'],
  ['attn.q_ln', 'attn.q_ln'],
  ['attn.k_ln', 'attn.k_ln'],
  ['attn.out_proj', 'attn.out_proj'],
  ['mlp.mlp_up', 'mlp.up'],
  ['ffn.up_proj', 'mlp.up'],
  ['mlp.mlp_down', 'mlp.down'],
  ['ffn.down_proj', 'mlp.down'],
]);

const TOP_LEVEL_MODULES = new Map([
  ['wte', 'wte'],
  ['ln_f', 'ln_f'],
  ['norm_f', 'ln_f'],
]);

/**
 * The canonical name of a checkpoint tensor, or null for tensors the engine does not use (buffers such as
 * attn.masked_bias, and lm_head.weight, which is the tied embedding). The `transformer.` prefix is optional.
 */
export function canonicalName(sourceName: string): string | null {
  const name = sourceName.startsWith('transformer.') ? sourceName.slice('transformer.'.length) : sourceName;
  const param = /^(.+)\.(weight|bias)$/.exec(name);
  if (!param) return null;
  const [, modulePath, kind] = param;
  const block = /^blocks\.(\d+)\.(.+)$/.exec(modulePath);
  if (block) {
    const module = BLOCK_MODULES.get(block[2]);
    return module === undefined ? null : `blocks.${block[1]}.${module}.${kind}`;
  }
  const module = TOP_LEVEL_MODULES.get(modulePath);
  if (module === undefined || (module === 'wte' && kind === 'bias')) return null;
  return `${module}.${kind}`;
}

/** Every tensor the config needs, canonical name → shape (Linear weights are [out, in]). */
export function expectedTensors(config: MptConfig): Map<string, number[]> {
  const { dModel: d, dFf, vocabSize, noBias, qkLn } = config;
  const expected = new Map<string, number[]>();
  const linear = (name: string, out: number, inFeatures: number) => {
    expected.set(`${name}.weight`, [out, inFeatures]);
    if (!noBias) expected.set(`${name}.bias`, [out]);
  };
  const norm = (name: string) => {
    expected.set(`${name}.weight`, [d]);
    if (!noBias) expected.set(`${name}.bias`, [d]);
  };
  expected.set('wte.weight', [vocabSize, d]);
  for (let i = 0; i < config.nLayers; i++) {
    const block = `blocks.${i}`;
    norm(`${block}.ln_1`);
    linear(`${block}.attn.Wqkv`, 3 * d, d);
    if (qkLn) {
      norm(`${block}.attn.q_ln`);
      norm(`${block}.attn.k_ln`);
    }
    linear(`${block}.attn.out_proj`, d, d);
    norm(`${block}.ln_2`);
    linear(`${block}.mlp.up`, dFf, d);
    linear(`${block}.mlp.down`, d, dFf);
  }
  norm('ln_f');
  return expected;
}
