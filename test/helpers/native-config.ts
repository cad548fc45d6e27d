import { mptAlibiSlopes } from '../../lib/config';
import type { NativeEngineOptions, NativeModelConfig } from '../../lib/native';

/**
 * A small MPT shape for engine tests; the derived fields (d_ff, softmax scale, ALiBi slopes) follow the
 * dModel/nHeads in `overrides` unless overridden themselves.
 */
export function nativeModelConfig(overrides: Partial<NativeModelConfig> = {}): NativeModelConfig {
  const dModel = overrides.dModel ?? 64;
  const nHeads = overrides.nHeads ?? 4;
  return {
    dModel,
    nHeads,
    nLayers: 2,
    dFf: 4 * dModel,
    vocabSize: 101,
    maxSeqLen: 512,
    layerNormEps: 1e-5,
    qkLn: true,
    hasBias: false,
    clipQkv: 0,
    softmaxScale: 1 / Math.sqrt(dModel / nHeads),
    logitScale: 1,
    alibiSlopes: mptAlibiSlopes(nHeads, 8),
    ...overrides,
  };
}

/** Engine options for `config` with seeded random weights on the CPU, 4 sequences of 300 tokens, unless overridden. */
export function nativeEngineOptions(config: NativeModelConfig, overrides: Partial<NativeEngineOptions> = {}): NativeEngineOptions {
  return { config, tensors: [], randomWeights: true, seed: 7, device: -1, computeDType: 'bf16', kvTokens: 300, maxSequences: 4, kvBlocks: 0, threads: 0, ...overrides };
}
