/**
 * Continuous batching over one native engine. Concurrent generations share decode steps: each iteration of the
 * loop admits waiting requests into free sequence slots, runs at most one prefill chunk (so a long prompt holds
 * the running sequences back by one chunk, not by its whole length), then one decodeBatch over every running
 * sequence whose next token is known, and hands each sequence its row of logits. Sequences that finish, break
 * off or abort leave at once; the native slot of one released mid-call is reused only after that call lands.
 *
 * KV accounting. The native KV cache is slot-based, not paged: each of the maxSequences slots owns kvTokens
 * contiguous tokens of cache, allocated at load. The scheduler counts KV in blocks of KV_BLOCK_TOKENS anyway:
 * in use = Σ ceil(length / KV_BLOCK_TOKENS) over admitted sequences (what the metrics show), and a request is
 * admitted only when the blocks for its prompt + maxTokens fit the budget (slots × blocks per slot). With the
 * slot-based cache that budget cannot bind before the slot count does; a paged cache would make it smaller.
 */
import { FlashMptError, fromNativeError } from '../errors';
import type { NativeEngine } from '../native';
import { TokenRate } from './token-rate';

export const KV_BLOCK_TOKENS = 16;

export interface SchedulerOptions {
  /** Requests that may wait for a sequence slot; one more gets E_QUEUE_FULL at once. */
  maxQueue: number;
  /** How long a request may wait for a slot before it gets E_QUEUE_FULL; 0 = no limit. */
  queueTimeoutMs: number;
  /** Prompt tokens per prefill call; running sequences take a decode step between two chunks. */
  prefillChunkTokens: number;
}

export interface SchedulerCapacity {
  maxSequences: number;
  /** KV cache per slot, in tokens. */
  kvTokens: number;
}

export interface SchedulerMetrics {
  queueLength: number;
  /** Admitted sequences: prefilling or decoding. */
  runningSequences: number;
  generatedTokensTotal: number;
  /** Generated tokens per second over the last 10 s. */
  tokensPerSecond: number;
  kvBlocksInUse: number;
  kvBlocksTotal: number;
  kvBlockTokens: number;
}

export interface OpenOptions {
  /** Tokens the sequence may generate after the prompt (its KV reservation). */
  maxTokens: number;
  /** Aborting drops the request from the queue or frees its sequence at once; a pending step rejects with E_ABORTED. */
  signal?: AbortSignal;
  /** The prefill step resolves with the logits of every prompt position instead of the last one. */
  allLogits?: boolean;
}

/** One request's view of the scheduler. */
export interface ScheduledSequence {
  /** True once the request has left the queue for a sequence slot. */
  readonly admitted: boolean;
  /** Logits of the next position: first the prompt's (after admission and prefill), then after each accept() that token's. */
  next(): Promise<Float32Array>;
  /** A generated token: counted in the metrics, and the input of the next step. */
  accept(token: number): void;
  /** Leaves the scheduler now (queue or slot); a pending next() rejects with E_ABORTED. Idempotent. */
  release(): void;
}

interface Deferred {
  promise: Promise<Float32Array>;
  resolve(logits: Float32Array): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: (logits: Float32Array) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<Float32Array>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A consumer that stops early may leave a step unawaited: its rejection must not be an unhandled one.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function blocksFor(tokens: number): number {
  return Math.ceil(tokens / KV_BLOCK_TOKENS);
}

type Phase = 'queued' | 'prefill' | 'decode' | 'done';

class Sequence implements ScheduledSequence {
  phase: Phase = 'queued';
  admitted = false;
  /** Native sequence handle, once admitted. */
  handle = -1;
  /** Prompt tokens already run. */
  prefilled = 0;
  /** Tokens in the KV cache. */
  length = 0;
  /** A native call using this sequence is running. */
  inFlight = false;
  /** The accepted token the next decode step feeds. */
  input: number | null = null;
  /** The consumer's pending next(); the first one is the prefill's. */
  waiter: Deferred | null = deferred();
  private readonly prefillStep = this.waiter!.promise;
  private prefillTaken = false;
  readonly promptRows: Float32Array[] = [];
  queueTimer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;

  constructor(
    private readonly scheduler: Scheduler,
    readonly prompt: Int32Array,
    readonly reservedBlocks: number,
    readonly allLogits: boolean,
    readonly signal: AbortSignal | undefined,
  ) {}

  next(): Promise<Float32Array> {
    if (!this.prefillTaken) {
      this.prefillTaken = true;
      return this.prefillStep;
    }
    if (this.phase === 'done') return Promise.reject(new FlashMptError('E_ABORTED', 'the sequence was released'));
    if (this.input === null || this.waiter) {
      throw new FlashMptError('E_INTERNAL', 'next() needs one accept() after the previous step landed');
    }
    this.waiter = deferred();
    this.scheduler.queued();
    return this.waiter.promise;
  }

  accept(token: number): void {
    this.input = token;
    this.scheduler.countToken();
  }

  release(): void {
    this.scheduler.finish(this, new FlashMptError('E_ABORTED', 'the sequence was released'));
  }
}

export class Scheduler {
  private readonly queue: Sequence[] = [];
  /** Admitted sequences in admission order (prefills run first come, first served). */
  private readonly active = new Set<Sequence>();
  /** Slots of sequences released while a native call used them: the engine frees them when that call ends. */
  private draining = 0;
  private reservedBlocks = 0;
  private readonly kvBlocksTotal: number;
  private looping = false;
  private closed = false;
  private generatedTokens = 0;
  private readonly rate = new TokenRate();
  /** Decoding sequences whose consumer has not yet queued its next token (no pending next()). */
  private awaitingConsumers = 0;
  /** Set while the loop waits for consumers: ends that wait. */
  private resumeLoop: (() => void) | null = null;

  constructor(
    private readonly engine: NativeEngine,
    private readonly capacity: SchedulerCapacity,
    private readonly options: SchedulerOptions,
  ) {
    this.kvBlocksTotal = capacity.maxSequences * blocksFor(capacity.kvTokens);
  }

  /** Queues a request (admitting it at once when a slot is free); E_QUEUE_FULL when the queue is full. */
  open(prompt: Int32Array, options: OpenOptions): ScheduledSequence {
    if (this.closed) throw new FlashMptError('E_DISPOSED', 'this model has been disposed');
    if (options.signal?.aborted) throw new FlashMptError('E_ABORTED', 'the signal was aborted before the request was queued');
    const sequence = new Sequence(this, prompt, blocksFor(prompt.length + options.maxTokens), options.allLogits ?? false, options.signal);
    this.queue.push(sequence);
    this.admit();
    if (sequence.phase === 'queued') {
      if (this.queue.length > this.options.maxQueue) {
        this.queue.pop();
        throw new FlashMptError(
          'E_QUEUE_FULL',
          `all ${this.capacity.maxSequences} sequence slots are busy and ${this.options.maxQueue} requests already wait (loadModel's maxQueue)`,
        );
      }
      if (this.options.queueTimeoutMs > 0) {
        const ms = this.options.queueTimeoutMs;
        sequence.queueTimer = setTimeout(() => {
          this.finish(sequence, new FlashMptError('E_QUEUE_FULL', `waited ${ms} ms for a sequence slot (loadModel's queueTimeoutMs)`));
        }, ms);
        sequence.queueTimer.unref();
      }
    }
    if (options.signal && sequence.phase !== 'done') {
      sequence.onAbort = () => this.finish(sequence, new FlashMptError('E_ABORTED', 'the signal was aborted'));
      options.signal.addEventListener('abort', sequence.onAbort, { once: true });
    }
    this.wake();
    return sequence;
  }

  metrics(): SchedulerMetrics {
    let kvBlocksInUse = 0;
    for (const sequence of this.active) kvBlocksInUse += blocksFor(sequence.length);
    return {
      queueLength: this.queue.length,
      runningSequences: this.active.size,
      generatedTokensTotal: this.generatedTokens,
      tokensPerSecond: this.rate.perSecond(),
      kvBlocksInUse,
      kvBlocksTotal: this.kvBlocksTotal,
      kvBlockTokens: KV_BLOCK_TOKENS,
    };
  }

  /** Fails every request with E_DISPOSED; the engine is disposed next, so no sequence is released natively. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new FlashMptError('E_DISPOSED', 'this model has been disposed');
    for (const sequence of [...this.queue, ...this.active]) this.finish(sequence, error);
  }

  /** @internal */
  countToken(): void {
    this.generatedTokens++;
    this.rate.add(1);
  }

  /** @internal A consumer queued its next token. */
  queued(): void {
    this.consumerAnswered();
    this.wake();
  }

  /** @internal Takes the sequence out of the queue or its slot; a pending step rejects with `error`. */
  finish(sequence: Sequence, error: FlashMptError): void {
    if (sequence.phase === 'done') return;
    clearTimeout(sequence.queueTimer);
    if (sequence.onAbort) sequence.signal?.removeEventListener('abort', sequence.onAbort);
    if (sequence.phase === 'queued') {
      this.queue.splice(this.queue.indexOf(sequence), 1);
    } else {
      this.active.delete(sequence);
      this.reservedBlocks -= sequence.reservedBlocks;
      if (sequence.inFlight) this.draining++;
      if (sequence.phase === 'decode' && !sequence.waiter) this.consumerAnswered();
      if (!this.closed) this.engine.releaseSequence(sequence.handle);
    }
    sequence.phase = 'done';
    const waiter = sequence.waiter;
    sequence.waiter = null;
    waiter?.reject(error);
    if (this.queue.length > 0) this.wake();
  }

  /** @internal Starts the loop unless it runs; it stops by itself when nothing is left to do. */
  wake(): void {
    if (this.looping || this.closed) return;
    this.looping = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.admit();
      const prefill = [...this.active].find((s) => s.phase === 'prefill');
      if (prefill) await this.prefillChunk(prefill);
      const batch = [...this.active].filter((s) => s.phase === 'decode' && s.waiter !== null && s.input !== null);
      if (batch.length > 0) await this.decodeStep(batch);
      if (this.closed || (!prefill && batch.length === 0)) {
        this.looping = false;
        return;
      }
      await this.consumersTurn();
    }
  }

  /**
   * Consumers sample and queue their next tokens in the callbacks that run after a step lands. The next step
   * starts once all of them have, or after one turn of the event loop (a slow consumer joins the step after).
   */
  private consumersTurn(): Promise<void> {
    if (this.awaitingConsumers === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const immediate = setImmediate(() => resume());
      const resume = () => {
        clearImmediate(immediate);
        this.resumeLoop = null;
        resolve();
      };
      this.resumeLoop = resume;
    });
  }

  /** The loop need not wait once every running sequence has queued its next token or left. */
  private consumerAnswered(): void {
    this.awaitingConsumers--;
    if (this.awaitingConsumers === 0) this.resumeLoop?.();
  }

  /** Hands a landed step's logits to the consumer, who now owes the next token. */
  private settle(sequence: Sequence, logits: Float32Array): void {
    const waiter = sequence.waiter!;
    sequence.waiter = null;
    this.awaitingConsumers++;
    waiter.resolve(logits);
  }

  private admit(): void {
    while (this.queue.length > 0 && !this.closed && this.active.size + this.draining < this.capacity.maxSequences) {
      const sequence = this.queue[0];
      if (this.reservedBlocks + sequence.reservedBlocks > this.kvBlocksTotal) return;
      try {
        sequence.handle = this.engine.createSequence();
      } catch (err) {
        this.finish(sequence, fromNativeError(err));
        continue;
      }
      this.queue.shift();
      clearTimeout(sequence.queueTimer);
      sequence.phase = 'prefill';
      sequence.admitted = true;
      this.active.add(sequence);
      this.reservedBlocks += sequence.reservedBlocks;
    }
  }

  /** A native call using `sequence` ended: false when the sequence was released meanwhile (its slot is free now). */
  private landed(sequence: Sequence): boolean {
    sequence.inFlight = false;
    if (sequence.phase !== 'done') return true;
    this.draining--;
    return false;
  }

  private async prefillChunk(sequence: Sequence): Promise<void> {
    const start = sequence.prefilled;
    const chunk = sequence.prompt.subarray(start, start + this.options.prefillChunkTokens);
    sequence.inFlight = true;
    let logits: Float32Array;
    try {
      logits = await this.engine.forward(sequence.handle, chunk, sequence.allLogits);
    } catch (err) {
      if (this.landed(sequence)) this.finish(sequence, fromNativeError(err));
      return;
    }
    if (!this.landed(sequence)) return;
    sequence.prefilled += chunk.length;
    sequence.length += chunk.length;
    if (sequence.allLogits) sequence.promptRows.push(logits);
    if (sequence.prefilled < sequence.prompt.length) return;
    sequence.phase = 'decode';
    this.settle(sequence, sequence.allLogits ? concatRows(sequence.promptRows) : logits);
  }

  private async decodeStep(batch: Sequence[]): Promise<void> {
    const seqs = Int32Array.from(batch, (s) => s.handle);
    const ids = Int32Array.from(batch, (s) => s.input!);
    for (const sequence of batch) {
      sequence.input = null;
      sequence.inFlight = true;
    }
    let logits: Float32Array;
    try {
      logits = await this.engine.decodeBatch(seqs, ids);
    } catch (err) {
      const error = fromNativeError(err);
      for (const sequence of batch) if (this.landed(sequence)) this.finish(sequence, error);
      return;
    }
    const vocab = logits.length / batch.length;
    batch.forEach((sequence, i) => {
      if (!this.landed(sequence)) return;
      sequence.length++;
      this.settle(sequence, logits.subarray(i * vocab, (i + 1) * vocab));
    });
  }
}

function concatRows(rows: Float32Array[]): Float32Array {
  if (rows.length === 1) return rows[0];
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const row of rows) {
    out.set(row, at);
    at += row.length;
  }
  return out;
}
