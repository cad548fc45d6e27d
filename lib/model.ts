/**
 * Model: the public object. Loads a Hub-style MPT folder (config.json, weights, optional tokenizer.json) onto
 * a native engine (CPU reference or CUDA), exposes logits, and runs the generation loop: the scheduler batches
 * the engine's steps across concurrent calls, the TypeScript sampler picks tokens, the streaming decoder and stop
 * matcher shape the text.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { loadTensorIndex } from './checkpoint';
import { loadConfig, MptConfig } from './config';
import { FlashMptError, fromNativeError } from './errors';
import { loadNative, NativeEngine, NativeEngineOptions, NativeModelConfig, NativeTensorSource } from './native';
import { GenerateOptions, parseGenerateOptions, ResolvedGenerateOptions, Sampler, StopMatcher } from './sampling';
import { Scheduler, SchedulerMetrics, SchedulerOptions } from './scheduler';
import { Tokenizer } from './tokenizer';
import { zodIssuesMessage } from './validation';

const DeviceSchema = z.union([z.enum(['cpu', 'cuda', 'auto']), z.string().regex(/^cuda:\d+$/, 'expected cpu, cuda, cuda:N or auto')]);

export const LoadModelOptionsSchema = z
  .object({
    device: DeviceSchema.default('auto'),
    /**
     * CUDA compute precision. 'f32' is the correctness mode: fp32 weights, KV cache and activations, plain fp32
     * GEMMs and attention (no tensor cores, no decode graph), several times slower. The CPU engine always uses fp32.
     */
    dtype: z.enum(['bf16', 'f16', 'f32']).default('bf16'),
    /** KV cache length per sequence; defaults to the config's max_seq_len (ALiBi lets it go past). */
    maxContext: z.number().int().positive().optional(),
    /** Sequences that can be in flight at once. */
    maxSequences: z.number().int().positive().max(1024).default(1),
    /**
     * Tokens of KV cache all sequences share (paged: each takes blocks as it grows); default maxSequences ×
     * maxContext, enough for every sequence at full context. Less lets many short sequences run in little memory.
     */
    kvCacheTokens: z.number().int().positive().optional(),
    /**
     * Requests that may wait for a busy sequence slot; one more gets E_QUEUE_FULL at once. A slot released while its
     * last step still runs is not busy: the next request waits for it without counting here.
     */
    maxQueue: z.number().int().nonnegative().default(256),
    /** How long a request may wait for a slot before it gets E_QUEUE_FULL; 0 = no limit. */
    queueTimeoutMs: z.number().int().nonnegative().default(60_000),
    /** Prompt tokens per prefill call. */
    prefillChunkTokens: z.number().int().positive().default(512),
    /**
     * Prompt tokens prefilled between two decode steps of the running sequences, in whole chunks (at least one):
     * more lets a burst of requests start decoding together (throughput), fewer keeps running streams' gaps short.
     */
    prefillTokensPerStep: z.number().int().positive().default(2048),
    /** CPU backend worker threads; 0 = all cores. */
    threads: z.number().int().nonnegative().default(0),
    /**
     * Candidates per sequence a decode step hands the sampler (top-K logits and the row's log-sum-exp) instead of
     * the full row, which is fetched only when they cannot decide the token; 0 = always the full row.
     */
    candidates: z.number().int().min(0).max(1024).default(64),
    /**
     * Most decode steps one call runs while every running request decodes plain greedy (temperature 0, no bias or
     * penalties) and none waits: the device picks each token and feeds it to the next step, and the tokens reach
     * the consumers in bursts of up to this many. 1 = a round trip to JS every step.
     */
    greedyChainSteps: z.number().int().min(1).max(1024).default(8),
    /** Called as checkpoint bytes are read and moved to the device (about each percent, and once at the end). */
    onProgress: z.custom<(progress: LoadProgress) => void>((value) => typeof value === 'function', 'expected a function').optional(),
  })
  .strict();
export type LoadModelOptions = z.input<typeof LoadModelOptionsSchema>;
export interface LoadProgress {
  loadedBytes: number;
  totalBytes: number;
}
type ResolvedLoadModelOptions = z.output<typeof LoadModelOptionsSchema>;

export type FinishReason = 'stop' | 'length' | 'eos' | 'abort';
export type Prompt = string | { ids: ArrayLike<number> };

export interface GenerateResult {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  usage: { promptTokens: number; completionTokens: number };
  timings: { promptMs: number; decodeMs: number; tokensPerSecond: number };
}

export interface StreamChunk {
  /** Text made final by this token (may be empty while a UTF-8 character or a possible stop string is pending). */
  text: string;
  /** The sampled token; null on the last chunk when it only carries text held back until the end. */
  tokenId: number | null;
}

function parseLoadOptions(options: unknown): ResolvedLoadModelOptions {
  const parsed = LoadModelOptionsSchema.safeParse(options ?? {});
  if (!parsed.success) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `invalid loadModel options: ${zodIssuesMessage(parsed.error)}`, { details: parsed.error.issues });
  }
  return parsed.data;
}

/** The engine's KV pool for a kvCacheTokens option: whole blocks, 0 for the engine's default. */
function kvBlocksFor(kvCacheTokens: number | undefined): number {
  return kvCacheTokens === undefined ? 0 : Math.ceil(kvCacheTokens / loadNative().kvBlockTokens);
}

/** Resolves 'auto' | 'cuda' | 'cuda:N' | 'cpu' to a native device ordinal (-1 = CPU). */
function resolveDevice(device: string): number {
  if (device === 'cpu') return -1;
  const count = loadNative().deviceCount();
  if (device === 'auto') return count > 0 ? 0 : -1;
  const ordinal = device === 'cuda' ? 0 : Number(device.slice('cuda:'.length));
  if (count === 0) {
    const why = loadNative().buildInfo().cuda ? 'no CUDA GPU is visible' : 'this build of flash-mpt has no CUDA backend (install the CUDA toolkit and run `npm run build`)';
    throw new FlashMptError('E_DEVICE', `device '${device}' requested but ${why}; use device 'cpu' or 'auto'`);
  }
  if (ordinal >= count) throw new FlashMptError('E_DEVICE', `device '${device}' does not exist: ${count} CUDA device(s) visible`);
  return ordinal;
}

function nativeConfig(config: MptConfig): NativeModelConfig {
  return {
    dModel: config.dModel,
    nHeads: config.nHeads,
    nLayers: config.nLayers,
    dFf: config.dFf,
    vocabSize: config.vocabSize,
    maxSeqLen: config.maxSeqLen,
    layerNormEps: config.layerNormEps,
    qkLn: config.qkLn,
    hasBias: !config.noBias,
    clipQkv: config.clipQkv ?? 0,
    softmaxScale: config.softmaxScale,
    logitScale: config.logitScale,
    alibiSlopes: config.alibiSlopes,
  };
}

export class Model implements AsyncDisposable {
  readonly config: MptConfig;
  readonly tokenizer: Tokenizer | undefined;
  readonly device: string;
  /** KV cache length per sequence (prompt + generated tokens). */
  readonly maxContext: number;
  /** Ids below this can be sampled: those the tokenizer can produce (the config's vocabulary may be padded). */
  readonly sampleableVocabSize: number;
  private engine: NativeEngine | null;
  private readonly scheduler: Scheduler;

  /** @internal use loadModel() */
  constructor(engine: NativeEngine, config: MptConfig, tokenizer: Tokenizer | undefined, device: string, maxContext: number, options: ResolvedLoadModelOptions) {
    this.engine = engine;
    this.config = config;
    this.tokenizer = tokenizer;
    this.device = device;
    this.maxContext = maxContext;
    this.sampleableVocabSize = tokenizer ? Math.min(tokenizer.vocabSize, config.vocabSize) : config.vocabSize;
    const schedulerOptions: SchedulerOptions = {
      maxQueue: options.maxQueue,
      queueTimeoutMs: options.queueTimeoutMs,
      prefillChunkTokens: options.prefillChunkTokens,
      prefillTokensPerStep: options.prefillTokensPerStep,
      candidates: options.candidates,
      greedyChainSteps: options.greedyChainSteps,
    };
    const blocks = engine.kvBlocks();
    const capacity = { maxSequences: options.maxSequences, kvBlocks: blocks.total, kvBlockTokens: blocks.blockTokens, sampleableVocab: this.sampleableVocabSize };
    this.scheduler = new Scheduler(engine, capacity, schedulerOptions);
  }

  /** True once dispose() has been called. */
  get disposed(): boolean {
    return this.engine === null;
  }

  /** @internal The native engine; throws E_DISPOSED after dispose(). The benchmark times it directly. */
  live(): NativeEngine {
    if (!this.engine) throw new FlashMptError('E_DISPOSED', 'this model has been disposed');
    return this.engine;
  }

  /** Queue, running sequences, throughput and KV blocks of the scheduler that batches this model's calls. */
  schedulerMetrics(): SchedulerMetrics {
    return this.scheduler.metrics();
  }

  /** Bytes held by the engine (device memory on CUDA, host memory on CPU). */
  memory(): { weightBytes: number; kvCacheBytes: number; workspaceBytes: number } {
    return this.live().memory();
  }

  private toIds(ids: ArrayLike<number>, what: string): Int32Array {
    const out = new Int32Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new FlashMptError('E_TOKEN_RANGE', `${what}[${i}] = ${id} is not a token id in [0, ${this.config.vocabSize})`);
      }
      out[i] = id;
    }
    return out;
  }

  /** Logits of every position of `ids` (ids.length × vocabSize, row-major), from an empty context. */
  async logits(ids: ArrayLike<number>): Promise<Float32Array> {
    this.live();
    const input = this.toIds(ids, 'ids');
    if (input.length === 0) throw new FlashMptError('E_INVALID_ARGUMENT', 'logits() needs at least one token id');
    if (input.length > this.maxContext) {
      throw new FlashMptError('E_CONTEXT_LENGTH', `${input.length} tokens exceed the context of ${this.maxContext} (raise loadModel's maxContext)`);
    }
    return this.scheduler.promptLogits(input);
  }

  private promptIds(prompt: Prompt): number[] {
    if (typeof prompt === 'string') {
      if (!this.tokenizer) {
        throw new FlashMptError('E_TOKENIZER', 'a text prompt needs a tokenizer, but the model folder has no tokenizer.json; pass { ids } or add tokenizer.json');
      }
      return this.tokenizer.encode(prompt);
    }
    if (!prompt || typeof prompt !== 'object' || !('ids' in prompt)) {
      throw new FlashMptError('E_INVALID_ARGUMENT', 'prompt must be a string or { ids: number[] }');
    }
    return Array.from(this.toIds(prompt.ids, 'prompt.ids'));
  }

  /** Fits prompt + maxTokens into the context, or fails with E_CONTEXT_LENGTH. */
  private fitContext(ids: number[], opts: ResolvedGenerateOptions): number[] {
    const context = opts.maxContext ?? this.maxContext;
    if (context > this.maxContext) {
      throw new FlashMptError('E_CONTEXT_LENGTH', `maxContext ${context} exceeds the ${this.maxContext} tokens of KV cache reserved at load (loadModel's maxContext)`);
    }
    if (ids.length === 0) throw new FlashMptError('E_INVALID_ARGUMENT', 'the prompt is empty');
    if (ids.length + opts.maxTokens <= context) return ids;
    if (opts.truncate === 'left' && opts.maxTokens < context) return ids.slice(ids.length - (context - opts.maxTokens));
    throw new FlashMptError(
      'E_CONTEXT_LENGTH',
      `prompt (${ids.length} tokens) + maxTokens (${opts.maxTokens}) exceed the context of ${context} tokens; shorten the prompt, lower maxTokens, or pass truncate: 'left'`,
    );
  }

  /**
   * Streams generated tokens. Breaking out of the loop or aborting the signal ends generation within one step
   * and frees the sequence. The final chunk of a run that stopped on a stop string carries no stop text.
   */
  stream(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<StreamChunk, GenerateResult, undefined> {
    const opts = parseGenerateOptions(options);
    const ids = this.fitContext(this.promptIds(prompt), opts);
    return this.run(ids, opts);
  }

  async generate(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerateResult> {
    const iterator = this.stream(prompt, options);
    for (;;) {
      const step = await iterator.next();
      if (step.done) return step.value;
    }
  }

  private async *run(promptIds: number[], opts: ResolvedGenerateOptions): AsyncGenerator<StreamChunk, GenerateResult, undefined> {
    this.live();
    const eos = this.tokenizer?.eosTokenId;
    const sampler = new Sampler(opts, { sampleableVocabSize: this.sampleableVocabSize, eosTokenId: eos });
    sampler.setPrompt(promptIds);
    const stopIds = new Set(opts.stopTokenIds);
    if (eos !== undefined && !opts.ignoreEos) stopIds.add(eos);
    const decoder = this.tokenizer?.createDecoder();
    const stopMatcher = new StopMatcher(opts.stop);
    const tokenIds: number[] = [];
    let text = '';
    let finishReason: FinishReason = 'length';
    const start = performance.now();
    let promptMs = 0;

    const sequence = this.scheduler.open(Int32Array.from(promptIds), { maxTokens: opts.maxTokens, sampler, signal: opts.signal });
    // The signal frees the sequence at once and fails its pending step: once admitted, that is an 'abort' finish
    // (null here); while still queued, the E_ABORTED error stands.
    const landed = async (step: Promise<number>): Promise<number | null> => {
      try {
        return await step;
      } catch (err) {
        if (opts.signal?.aborted && sequence.admitted) return null;
        throw fromNativeError(err);
      }
    };
    try {
      let token = await landed(sequence.next());
      promptMs = performance.now() - start;
      for (;;) {
        if (tokenIds.length === opts.maxTokens) break;
        if (token === null || opts.signal?.aborted) {
          finishReason = 'abort';
          break;
        }
        if (stopIds.has(token)) {
          finishReason = 'eos';
          break;
        }
        sampler.accept(token);
        sequence.accept(token);
        tokenIds.push(token);
        const piece = stopMatcher.push(decoder ? decoder.push(token) : '');
        text += piece.emit;
        if (piece.stopped) {
          finishReason = 'stop';
          yield { text: piece.emit, tokenId: token };
          break;
        }
        // Queue the next step before yielding so it joins the next batch while the consumer handles this chunk.
        const pending = tokenIds.length < opts.maxTokens ? sequence.next() : null;
        // A step that fails while the consumer holds this chunk (dispose(), a released slot) rejects before the await
        // below: marked handled here, it is still thrown there — and not at all when the consumer stops reading.
        pending?.catch(() => undefined);
        yield { text: piece.emit, tokenId: token };
        if (pending) token = await landed(pending);
      }
      if (finishReason !== 'stop') {
        // Text held back for a partial UTF-8 character or a possible stop string is final now.
        const held = stopMatcher.push(decoder ? decoder.flush() : '');
        if (held.stopped) finishReason = 'stop';
        const tail = held.emit + (held.stopped ? '' : stopMatcher.flush());
        if (tail) {
          text += tail;
          yield { text: tail, tokenId: null };
        }
      }
    } finally {
      // Also on break or abort: the slot frees now, a step in flight for it is dropped when it lands.
      sequence.release();
    }
    const decodeMs = performance.now() - start - promptMs;
    return {
      text,
      tokenIds,
      finishReason,
      usage: { promptTokens: promptIds.length, completionTokens: tokenIds.length },
      timings: { promptMs, decodeMs, tokensPerSecond: tokenIds.length > 1 ? ((tokenIds.length - 1) * 1000) / decodeMs : 0 },
    };
  }

  async dispose(): Promise<void> {
    if (!this.engine) return;
    const engine = this.engine;
    this.engine = null;
    this.scheduler.close();
    engine.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

async function openEngine(options: NativeEngineOptions, onProgress?: (progress: LoadProgress) => void): Promise<NativeEngine> {
  const totalBytes = options.tensors.reduce((sum, t) => sum + t.bytes, 0);
  let loadedBytes = 0;
  let settled = false;
  // Native reports arrive through the event loop and may trail the promise: those are dropped, and the final
  // report is made here, so the caller sees a monotone sequence that ends at totalBytes before loadModel resolves.
  // A listener that throws must not fail the load: its error becomes a process warning.
  const relay = onProgress && ((done: number) => {
    if (settled || done <= loadedBytes) return;
    loadedBytes = done;
    try {
      onProgress({ loadedBytes, totalBytes });
    } catch (err) {
      process.emitWarning(`flash-mpt: loadModel's onProgress threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  try {
    const engine = await loadNative().createEngine(options, relay);
    if (relay && loadedBytes < totalBytes) relay(totalBytes);
    return engine;
  } catch (err) {
    throw fromNativeError(err);
  } finally {
    settled = true;
  }
}

/** The engine for `config` on the options' device, with weights from `tensors` or made from `seed`, as a Model. */
async function openModel(
  config: MptConfig,
  opts: ResolvedLoadModelOptions,
  weights: Pick<NativeEngineOptions, 'tensors' | 'randomWeights' | 'seed'>,
  tokenizer: Tokenizer | undefined,
): Promise<Model> {
  const device = resolveDevice(opts.device);
  const maxContext = opts.maxContext ?? config.maxSeqLen;
  const engine = await openEngine(
    {
      config: nativeConfig(config),
      ...weights,
      device,
      computeDType: opts.dtype,
      kvTokens: maxContext,
      maxSequences: opts.maxSequences,
      kvBlocks: kvBlocksFor(opts.kvCacheTokens),
      threads: opts.threads,
    },
    opts.onProgress,
  );
  return new Model(engine, config, tokenizer, device < 0 ? 'cpu' : `cuda:${device}`, maxContext, opts);
}

/** Loads a Hub-style MPT folder: config.json, weights (safetensors or .bin, sharded or not), tokenizer.json if present. */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<Model> {
  const opts = parseLoadOptions(options);
  const root = path.resolve(dir);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
    throw new FlashMptError('E_CONFIG', `model folder not found: ${root} (pass the folder holding config.json and the weights)`);
  }
  const config = await loadConfig(root);
  const index = await loadTensorIndex(root, config);
  const tokenizerPath = path.join(root, 'tokenizer.json');
  const tokenizer = fs.existsSync(tokenizerPath) ? await Tokenizer.fromFile(tokenizerPath) : undefined;
  const tensors: NativeTensorSource[] = [...index.tensors.values()].map((t) => ({
    name: t.name,
    file: t.file,
    offset: t.offset,
    bytes: t.bytes,
    dtype: t.dtype,
    shape: t.shape,
  }));
  return openModel(config, opts, { tensors, randomWeights: false, seed: 0 }, tokenizer);
}

/** A model of the given shape with seeded random weights made by the engine itself (no file): the benchmark default. */
export async function createRandomModel(config: MptConfig, options: LoadModelOptions & { seed?: number } = {}): Promise<Model> {
  const { seed = 1234, ...rest } = options;
  return openModel(config, parseLoadOptions(rest), { tensors: [], randomWeights: true, seed }, undefined);
}
