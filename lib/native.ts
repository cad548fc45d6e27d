/**
 * The native addon (csrc/): its surface typed, and loaded once through node-gyp-build. Inputs are validated in
 * TypeScript before they cross; native code re-checks only what could corrupt memory. Native errors are Errors
 * whose message starts with "[CODE] " (see fromNativeError).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlashMptError } from './errors';

export type NativeDType = 'F32' | 'F16' | 'BF16';

export interface NativeModelConfig {
  dModel: number;
  nHeads: number;
  nLayers: number;
  dFf: number;
  vocabSize: number;
  maxSeqLen: number;
  layerNormEps: number;
  qkLn: boolean;
  hasBias: boolean;
  /** 0 = none */
  clipQkv: number;
  softmaxScale: number;
  logitScale: number;
  /** nHeads slopes (bias = slope·(j − i)); empty for no ALiBi */
  alibiSlopes: Float32Array;
}

/** Where one weight tensor's bytes live; `name` is canonical (csrc/engine/engine.h). */
export interface NativeTensorSource {
  name: string;
  file: string;
  offset: number;
  bytes: number;
  dtype: NativeDType;
  shape: number[];
}

export interface NativeEngineOptions {
  config: NativeModelConfig;
  /** ignored when randomWeights */
  tensors: NativeTensorSource[];
  randomWeights: boolean;
  seed: number;
  /** -1 = CPU, else a CUDA device ordinal */
  device: number;
  /** CUDA compute precision (f32: the correctness mode); the CPU engine always computes in fp32 */
  computeDType: 'bf16' | 'f16' | 'f32';
  /** Context length: the most tokens one sequence holds */
  kvTokens: number;
  maxSequences: number;
  /** Blocks of the paged KV pool shared by all sequences; 0 = maxSequences × ⌈kvTokens / block⌉ */
  kvBlocks: number;
  /** CPU worker threads, 0 = all cores */
  threads: number;
}

export interface NativeMemory {
  weightBytes: number;
  kvCacheBytes: number;
  workspaceBytes: number;
}

/** decodeBatchCandidates' result for n sequences and k candidates. */
export interface NativeCandidates {
  /** n × k: each row's k best ids below sampleableVocab (logit descending, ties to the lower id). */
  ids: Int32Array;
  /** n × k: their logits, bit-identical to the full row's. */
  logits: Float32Array;
  /** n: each row's log Σ exp(logit) over the ids below sampleableVocab. */
  logSumExp: Float32Array;
}

/**
 * One loaded model. Calls run one at a time, in order; forward, forwardPrompts, forwardPromptsCandidates,
 * decodeBatch, decodeBatchCandidates, decodeGreedy and lastLogits run off the JS thread.
 */
export interface NativeEngine {
  /** A new, empty sequence; E_OUT_OF_MEMORY when all maxSequences slots are taken. */
  createSequence(): number;
  /** Frees the slot (after the call using it, if one is running); E_INVALID_ARGUMENT for an unknown handle. */
  releaseSequence(seq: number): void;
  sequenceLength(seq: number): number;
  /** Appends ids to seq and runs them: ids.length × vocabSize logits when allLogits, else the last row only. */
  forward(seq: number, ids: Int32Array, allLogits: boolean): Promise<Float32Array>;
  /**
   * Prefill of whole prompts for up to 64 distinct sequences in shared passes: lengths[i] ≥ 1 ids of `ids` (the
   * prompts concatenated) appended to seqs[i]; each sequence's last-position logits come back, seqs.length ×
   * vocabSize. Nothing changes when it fails. Each prompt gets the logits of a call of its own, bit for bit (on a
   * GPU whose GEMMs could not promise that, the engine runs the prompts one by one); a forward of the same prompt
   * agrees within the dtype's precision (its GEMMs take the fastest layout for its rows).
   */
  forwardPrompts(seqs: Int32Array, ids: Int32Array, lengths: Int32Array): Promise<Float32Array>;
  /**
   * The same prefill handing back only each prompt's k candidates of its last-position row (as
   * decodeBatchCandidates does for a decode step); the engine keeps the full rows for lastLogits.
   */
  forwardPromptsCandidates(seqs: Int32Array, ids: Int32Array, lengths: Int32Array, k: number, sampleableVocab: number): Promise<NativeCandidates>;
  /** One new token for each sequence: seqs.length × vocabSize logits. */
  decodeBatch(seqs: Int32Array, ids: Int32Array): Promise<Float32Array>;
  /**
   * The same decode step, handing back only each row's k candidates (1 ≤ k ≤ min(1024, sampleableVocab)); the
   * engine keeps the full rows for lastLogits.
   */
  decodeBatchCandidates(seqs: Int32Array, ids: Int32Array, k: number, sampleableVocab: number): Promise<NativeCandidates>;
  /**
   * `steps` greedy decode steps (1 ≤ steps ≤ 1024) for up to 64 sequences with no round trip to JS between them:
   * each step feeds the row's previous pick — the sampler's greedy rule over ids below sampleableVocab, bannedId
   * (≥ 0) excluded — and the picks come back steps × seqs.length, step-major; -1 (+Infinity logit) or -2 (no
   * finite logit) marks a row the sampler would refuse. Every sequence grows by `steps` tokens.
   */
  decodeGreedy(seqs: Int32Array, ids: Int32Array, steps: number, sampleableVocab: number, bannedId: number): Promise<Int32Array>;
  /**
   * Row `row` (vocabSize logits) of the latest decode step or forwardPromptsCandidates, until the next call;
   * E_INVALID_ARGUMENT after a forward or forwardPrompts.
   */
  lastLogits(row: number): Promise<Float32Array>;
  memory(): NativeMemory;
  /** The paged KV pool: blocks in all, blocks no sequence holds, tokens per block. */
  kvBlocks(): { total: number; free: number; blockTokens: number };
  /** Frees everything once queued calls finish; later calls throw or reject with E_DISPOSED. */
  dispose(): void;
}

export interface NativeAddon {
  /** Loads the weights off the JS thread. */
  createEngine(options: NativeEngineOptions, onProgress?: (bytesDone: number, bytesTotal: number) => void): Promise<NativeEngine>;
  /** CUDA devices visible; 0 without a GPU or in a build without CUDA. */
  deviceCount(): number;
  buildInfo(): { cuda: boolean; version: string };
  /** Tokens per block of the engines' paged KV cache. */
  kvBlockTokens: number;
  /** Same-run ceilings on a CUDA device: 1 GiB device copy (read + write) and flash-mpt's bf16 GEMM at 8192³. */
  measureCeilings(device: number): Promise<{ copyGBs: number; gemmTflops: number }>;
  /** Prefill attention (bf16, causal, ALiBi, hd128) at batch × seqLen = tokens; TFLOP/s count 4·B·H·S²·D/2. */
  measureAttention(device: number, seqLens: number[], tokens: number, heads: number): Promise<Array<{ seqLen: number; batch: number; ms: number; tflops: number }>>;
}

/** The directory holding flash-mpt's package.json: lib/ runs from the source tree (tests) or as dist/. */
function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) {
      throw new FlashMptError('E_NATIVE', `cannot find flash-mpt's package.json above ${__dirname}`);
    }
  }
}

let cached: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    cached = nodeGypBuild(root) as NativeAddon;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new FlashMptError(
      'E_NATIVE',
      `the flash-mpt native addon could not be loaded (${reason}); build it with \`npm run build\` in ${root} ` +
        '(needs CMake and a C++17 compiler, or node-gyp; the CUDA toolkit for GPUs)',
      { cause: err },
    );
  }
  return cached;
}
