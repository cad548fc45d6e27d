/**
 * Continuous batching over one native engine. Concurrent generations share decode steps: each iteration of the
 * loop admits waiting requests into free sequence slots, prefills admitted prompts up to a budget of prompt tokens
 * (at least one chunk; so a long prompt holds the running sequences back by that budget, not by its whole length,
 * and a burst of short prompts starts decoding together instead of one per step: prompts of one chunk share one
 * forwardPrompts call), then one decode step over every running sequence whose next token is known, and hands
 * each sequence the token its sampler picks. A long prompt's chunks are the same whatever runs beside it
 * (prefillChunkTokens each). Prompts that share a call get the logits they would get alone, bit for bit (the
 * engine's GEMMs keep a row's sums independent of the rows beside it). Sequences that finish, break off or abort
 * leave at once; the engine lets go of one released mid-call only when that call lands.
 *
 * Sampling. A decode step, and a forwardPrompts call for its prompts' first tokens, asks the engine for each row's
 * top-K candidates and log-sum-exp (decodeBatchCandidates, forwardPromptsCandidates) instead of the full rows,
 * unless every sampler in the batch needs full rows. A row whose candidates do not decide its token fetches its
 * full row (lastLogits) before the engine's next call.
 *
 * Greedy chains. When every running sequence decodes plain greedy (its sampler's pick is the raw argmax), no
 * request waits and no prompt is half prefilled, the engine runs up to greedyChainSteps steps in one call
 * (decodeGreedy: each pick, made on the device, feeds the next step) and each sequence hands its consumer the
 * picks one next() at a time. As soon as a chain lands the next one starts from its last picks, while the
 * consumers are still taking the tokens, so their work stays off the GPU's critical path. The picks are the ones
 * single steps would make (batch invariance); a sequence that stops mid-chain simply leaves (its KV reservation
 * held the extra tokens), and chaining stops when a request arrives or a sequence leaves.
 *
 * KV memory. The native KV cache is paged: one pool of fixed-size blocks (kernels/kv/paged_kv.h) from which each
 * sequence takes blocks as it grows and to which a released sequence gives them back. A request is admitted only
 * when the blocks for its whole prompt + maxTokens fit next to what the admitted ones reserved, so the pool never
 * runs dry mid-generation; one that could never fit is refused at once (E_CONTEXT_LENGTH). Metrics show the
 * blocks the engine actually holds.
 */
import { FlashMptError, fromNativeError } from '../errors';
import type { NativeCandidates, NativeEngine } from '../native';
import { unsampleableRowError, type Sampler } from '../sampling';
import { TokenRate } from './token-rate';

export interface SchedulerOptions {
  /** Requests that may wait for a busy sequence slot; one more gets E_QUEUE_FULL at once. */
  maxQueue: number;
  /** How long a request may wait for a slot before it gets E_QUEUE_FULL; 0 = no limit. */
  queueTimeoutMs: number;
  /** Prompt tokens per prefill call. */
  prefillChunkTokens: number;
  /** Prompt tokens prefilled between two decode steps, in whole chunks; at least one chunk runs. */
  prefillTokensPerStep: number;
  /** Candidates per row a decode step asks the engine for; 0 = always full rows. */
  candidates: number;
  /** Most decode steps one greedy chain runs; 1 = every step returns to JS. */
  greedyChainSteps: number;
}

/** What the engine holds. */
export interface SchedulerCapacity {
  maxSequences: number;
  /** Blocks of the engine's KV pool, and tokens per block. */
  kvBlocks: number;
  kvBlockTokens: number;
  /** Ids below this can be sampled: the candidates are the best of them. */
  sampleableVocab: number;
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
  /** Tokens sampled from the top-K candidates of a decode step or of a prompt's last row alone. */
  sampledFromCandidatesTotal: number;
  /** Tokens sampled from a full row of logits: after a chunked prefill, or where candidates did not decide. */
  sampledFromFullRowTotal: number;
  /** Tokens picked on the device by greedy chains. */
  pickedOnDeviceTotal: number;
  /** Seconds the engine's prefill calls (forward, forwardPrompts[Candidates]) took, wall time from call to result. */
  prefillSecondsTotal: number;
  /** Seconds its decode calls (decodeBatch, decodeBatchCandidates, decodeGreedy) took. */
  decodeSecondsTotal: number;
}

/** What the scheduler asks of a sequence's sampler. */
export type StepSampler = Pick<Sampler, 'needsFullRow' | 'greedyBannedId' | 'sample' | 'sampleFromCandidates'>;

export interface OpenOptions {
  /** Tokens the sequence may generate after the prompt (its KV reservation). */
  maxTokens: number;
  /** Picks each next token; the consumer keeps it informed of accepted tokens. */
  sampler: StepSampler;
  /** Aborting drops the request from the queue or frees its sequence at once; a pending step rejects with E_ABORTED. */
  signal?: AbortSignal;
}

/** One request's view of the scheduler. */
export interface ScheduledSequence {
  /** True once the request has left the queue for a sequence slot. */
  readonly admitted: boolean;
  /** The next token: first the one after the prompt (after admission and prefill), then after each accept() the one after it. */
  next(): Promise<number>;
  /** A generated token: counted in the metrics, and the input of the next step. */
  accept(token: number): void;
  /** Leaves the scheduler now (queue or slot); a pending next() rejects with E_ABORTED. Idempotent. */
  release(): void;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A consumer that stops early may leave a step unawaited: its rejection must not be an unhandled one.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
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
  /** Picks of a greedy chain not handed out yet (the engine has fed them all but the last). */
  readonly lookahead: number[] = [];
  /** The token next() gave last: while picks are ahead, the only one accept() may take. */
  lastGiven = -1;
  /** A chain pick the sampler would refuse: the error next() gives once the picks before it are out. */
  chainError: FlashMptError | null = null;
  /** A greedy chain running now already feeds the last token next() gave (or will give). */
  chainInFlight = false;
  /** The scheduler handed this sequence a token and waits for its consumer to ask for the next (or leave). */
  owesAnswer = false;
  /** The consumer's pending next(); the first one is the prefill's. Null for a prompt-logits request. */
  waiter: Deferred<number> | null;
  private readonly prefillStep: Promise<number> | undefined;
  private prefillTaken = false;
  /** A prompt-logits request's result; its rows collect chunk by chunk. */
  readonly promptLogits: Deferred<Float32Array> | null;
  readonly promptRows: Float32Array[] = [];
  queueTimer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;

  /** `sampler` null: a prompt-logits request, over once its prefill lands. */
  constructor(
    private readonly scheduler: Scheduler,
    readonly prompt: Int32Array,
    readonly reservedBlocks: number,
    /** Prompt + maxTokens: the KV tokens the reservation holds. */
    readonly reservedTokens: number,
    readonly sampler: StepSampler | null,
    readonly signal: AbortSignal | undefined,
  ) {
    this.waiter = sampler ? deferred() : null;
    this.prefillStep = this.waiter?.promise;
    this.promptLogits = sampler ? null : deferred();
  }

  next(): Promise<number> {
    if (!this.prefillTaken && this.prefillStep) {
      this.prefillTaken = true;
      return this.prefillStep;
    }
    if (this.phase === 'done') return Promise.reject(new FlashMptError('E_ABORTED', 'the sequence was released'));
    if (this.input === null || this.waiter) {
      throw new FlashMptError('E_INTERNAL', 'next() needs one accept() after the previous step landed');
    }
    if (this.lookahead.length === 0 && this.chainError) {
      const error = this.chainError;
      this.scheduler.finish(this, error);
      return Promise.reject(error);
    }
    const ahead = this.lookahead.shift();
    if (ahead !== undefined) {
      // A chain fed the accepted token already.
      this.input = null;
      this.lastGiven = ahead;
      this.scheduler.pickedOnDevice();
      return Promise.resolve(ahead);
    }
    if (this.chainInFlight) this.input = null; // the running chain feeds it; its first pick settles this waiter
    this.waiter = deferred();
    this.scheduler.queued(this);
    return this.waiter.promise;
  }

  accept(token: number): void {
    if ((this.lookahead.length > 0 || this.chainInFlight) && token !== this.lastGiven) {
      throw new FlashMptError('E_INTERNAL', `accept(${token}) while a greedy chain runs ahead of token ${this.lastGiven}`);
    }
    this.input = token;
    this.scheduler.countToken();
  }

  release(): void {
    this.scheduler.finish(this, new FlashMptError('E_ABORTED', 'the sequence was released'));
  }
}

/** A landed decode step or prompts call: every full row, or each row's candidates with the full rows left in the engine. */
type EngineRows = { rows: Float32Array } | { candidates: NativeCandidates };

export class Scheduler {
  private readonly queue: Sequence[] = [];
  /** Admitted sequences in admission order (prefills run first come, first served). */
  private readonly active = new Set<Sequence>();
  /** Slots of sequences released while a native call used them: the engine frees them when that call ends. */
  private draining = 0;
  private reservedBlocks = 0;
  private readonly kvBlocksTotal: number;
  /** Candidates per row of a decode step; 0 = full rows only. */
  private readonly candidates: number;
  private looping = false;
  /** wake() came while the loop ran: the loop takes one more pass before it may stop. */
  private woken = false;
  private closed = false;
  private generatedTokens = 0;
  private sampledFromCandidates = 0;
  private sampledFromFullRow = 0;
  private pickedOnDeviceCount = 0;
  private readonly engineSeconds = { prefill: 0, decode: 0 };
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
    this.kvBlocksTotal = capacity.kvBlocks;
    this.candidates = Math.min(options.candidates, capacity.sampleableVocab);
  }

  /** Queues a generation (admitting it at once when a slot is free); E_QUEUE_FULL when the queue is full. */
  open(prompt: Int32Array, options: OpenOptions): ScheduledSequence {
    return this.enqueue(prompt, options.maxTokens, options.sampler, options.signal);
  }

  /** The logits of every prompt position (prompt.length × vocab), from an empty context: a request that generates nothing. */
  promptLogits(prompt: Int32Array): Promise<Float32Array> {
    return this.enqueue(prompt, 0, null, undefined).promptLogits!.promise;
  }

  private enqueue(prompt: Int32Array, maxTokens: number, sampler: StepSampler | null, signal: AbortSignal | undefined): Sequence {
    if (this.closed) throw new FlashMptError('E_DISPOSED', 'this model has been disposed');
    if (signal?.aborted) throw new FlashMptError('E_ABORTED', 'the signal was aborted before the request was queued');
    const blocks = Math.ceil((prompt.length + maxTokens) / this.capacity.kvBlockTokens);
    if (blocks > this.kvBlocksTotal) {
      throw new FlashMptError(
        'E_CONTEXT_LENGTH',
        `${prompt.length} prompt tokens + ${maxTokens} to generate need ${blocks} KV blocks of ${this.capacity.kvBlockTokens} tokens; the cache holds ${this.kvBlocksTotal} (loadModel's kvCacheTokens)`,
      );
    }
    const sequence = new Sequence(this, prompt, blocks, prompt.length + maxTokens, sampler, signal);
    this.queue.push(sequence);
    this.admit();
    if (sequence.phase === 'queued') {
      // A slot released while a step still ran for it frees when that step lands: its taker waits without counting.
      if (this.queue.length > this.options.maxQueue + this.draining) {
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
    if (signal && sequence.phase !== 'done') {
      sequence.onAbort = () => this.finish(sequence, new FlashMptError('E_ABORTED', 'the signal was aborted'));
      signal.addEventListener('abort', sequence.onAbort, { once: true });
    }
    this.wake();
    return sequence;
  }

  metrics(): SchedulerMetrics {
    // A closed scheduler's engine is disposed: its blocks are gone.
    const blocks = this.closed ? { total: this.kvBlocksTotal, free: this.kvBlocksTotal, blockTokens: this.capacity.kvBlockTokens } : this.engine.kvBlocks();
    return {
      queueLength: this.queue.length,
      runningSequences: this.active.size,
      generatedTokensTotal: this.generatedTokens,
      tokensPerSecond: this.rate.perSecond(),
      kvBlocksInUse: blocks.total - blocks.free,
      kvBlocksTotal: blocks.total,
      kvBlockTokens: blocks.blockTokens,
      sampledFromCandidatesTotal: this.sampledFromCandidates,
      sampledFromFullRowTotal: this.sampledFromFullRow,
      pickedOnDeviceTotal: this.pickedOnDeviceCount,
      prefillSecondsTotal: this.engineSeconds.prefill,
      decodeSecondsTotal: this.engineSeconds.decode,
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

  /** @internal A sequence handed out a pick of a greedy chain. */
  pickedOnDevice(): void {
    this.pickedOnDeviceCount++;
  }

  /** @internal A consumer queued its next token. */
  queued(sequence: Sequence): void {
    if (sequence.owesAnswer) this.consumerAnswered(sequence);
    this.wake();
  }

  /** @internal Takes the sequence out of the queue or its slot; a pending step rejects with `error`. */
  finish(sequence: Sequence, error: FlashMptError): void {
    if (!this.leave(sequence)) return;
    const waiter = sequence.waiter;
    sequence.waiter = null;
    waiter?.reject(error);
    sequence.promptLogits?.reject(error);
  }

  /** Takes the sequence out of the queue or its slot; false when it had left already. */
  private leave(sequence: Sequence): boolean {
    if (sequence.phase === 'done') return false;
    clearTimeout(sequence.queueTimer);
    if (sequence.onAbort) sequence.signal?.removeEventListener('abort', sequence.onAbort);
    if (sequence.phase === 'queued') {
      this.queue.splice(this.queue.indexOf(sequence), 1);
    } else {
      this.active.delete(sequence);
      this.reservedBlocks -= sequence.reservedBlocks;
      if (sequence.owesAnswer) this.consumerAnswered(sequence);
      // A native call using the sequence may still wait in the engine's queue, where a released handle would fail
      // the whole batch: the engine lets it go when that call lands (landed()).
      if (sequence.inFlight) this.draining++;
      else if (!this.closed) this.engine.releaseSequence(sequence.handle);
    }
    sequence.phase = 'done';
    if (this.queue.length > 0) this.wake();
    return true;
  }

  /** @internal Starts the loop, or has a running one take one more pass; it stops when nothing is left to do. */
  wake(): void {
    if (this.closed) return;
    if (this.looping) {
      this.woken = true;
      return;
    }
    this.looping = true;
    // From a microtask: requests opened in the same tick (a burst) are admitted and prefilled together.
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.woken = false;
      this.admit();
      const prefilled = await this.prefillRound();
      const batch = [...this.active].filter((s) => s.phase === 'decode' && s.waiter !== null && s.input !== null);
      const chainSteps = this.greedyChainSteps(batch);
      if (chainSteps > 1) {
        await this.greedyChain(batch, chainSteps);
      } else if (batch.length > 0) {
        await this.decodeStep(batch);
      }
      // Nothing ran: stop, unless a wake() came meanwhile (a request opened, or a slot freed for a queued one, while
      // the prefill round was awaited): that work is this loop's to take.
      if (this.closed || (!prefilled && batch.length === 0 && !this.woken)) {
        this.looping = false;
        return;
      }
      await this.consumersTurn();
    }
  }

  /**
   * Consumers take their tokens and queue the next ones in the callbacks that run after a step lands. The next
   * step starts once all of them have, or after one turn of the event loop (a slow consumer joins the step after).
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
  private consumerAnswered(sequence: Sequence): void {
    sequence.owesAnswer = false;
    this.awaitingConsumers--;
    if (this.awaitingConsumers === 0) this.resumeLoop?.();
  }

  /** Hands a landed step's token to the consumer, who now owes the next input. */
  private settle(sequence: Sequence, token: number): void {
    const waiter = sequence.waiter!;
    sequence.waiter = null;
    sequence.owesAnswer = true;
    this.awaitingConsumers++;
    waiter.resolve(token);
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

  /** Awaits an engine call started just now, adding its wall time to the phase's total (metrics). */
  private async timed<T>(phase: 'prefill' | 'decode', call: Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await call;
    } finally {
      this.engineSeconds[phase] += (performance.now() - start) / 1000;
    }
  }

  /** A native call using `sequence` ended: false when the sequence was released meanwhile (its slot is freed now). */
  private landed(sequence: Sequence): boolean {
    sequence.inFlight = false;
    if (sequence.phase !== 'done') return true;
    this.draining--;
    if (!this.closed) this.engine.releaseSequence(sequence.handle);
    return false;
  }

  /**
   * Prefill up to the per-step budget of prompt tokens (the first always runs), in admission order: whole prompts
   * of one chunk go together through one forwardPrompts call, longer prompts and prompt-logits requests chunk by
   * chunk. False if nothing ran.
   */
  private async prefillRound(): Promise<boolean> {
    let budget = this.options.prefillTokensPerStep;
    let ran = false;
    /** Takes `tokens` of the budget if they fit (the first take always does). */
    const take = (tokens: number) => {
      if (ran && tokens > budget) return false;
      ran = true;
      budget -= tokens;
      return true;
    };
    const whole: Sequence[] = [];
    for (const sequence of [...this.active]) {
      if (sequence.phase !== 'prefill') continue;
      const remaining = sequence.prompt.length - sequence.prefilled;
      if (sequence.sampler && sequence.prefilled === 0 && remaining <= this.options.prefillChunkTokens) {
        if (whole.length < MAX_PROMPT_SEQUENCES && take(remaining)) whole.push(sequence);
        continue;
      }
      while (sequence.phase === 'prefill' && !this.closed) {
        if (!take(Math.min(this.options.prefillChunkTokens, sequence.prompt.length - sequence.prefilled))) break;
        await this.prefillChunk(sequence);
      }
    }
    // Those released while the chunks ran are gone.
    const prompts = whole.filter((sequence) => sequence.phase === 'prefill');
    if (prompts.length > 0 && !this.closed) await this.prefillPrompts(prompts);
    return ran;
  }

  /** Whole prompts, each with a sampler, in one forwardPrompts call; their first tokens are sampled as a decode step's. */
  private async prefillPrompts(batch: Sequence[]): Promise<void> {
    const seqs = Int32Array.from(batch, (s) => s.handle);
    const lengths = Int32Array.from(batch, (s) => s.prompt.length);
    const ids = new Int32Array(batch.reduce((n, sequence) => n + sequence.prompt.length, 0));
    let at = 0;
    for (const sequence of batch) {
      ids.set(sequence.prompt, at);
      at += sequence.prompt.length;
      sequence.inFlight = true;
    }
    let step: EngineRows;
    try {
      step = this.wantsCandidates(batch)
        ? { candidates: await this.timed('prefill', this.engine.forwardPromptsCandidates(seqs, ids, lengths, this.candidates, this.capacity.sampleableVocab)) }
        : { rows: await this.timed('prefill', this.engine.forwardPrompts(seqs, ids, lengths)) };
    } catch (err) {
      const error = fromNativeError(err);
      for (const sequence of batch) if (this.landed(sequence)) this.finish(sequence, error);
      return;
    }
    const rows = batch.map((sequence) => (this.landed(sequence) && this.advancePrompt(sequence, sequence.prompt.length) ? sequence : null));
    await this.sampleRows(rows, step);
  }

  private async prefillChunk(sequence: Sequence): Promise<void> {
    const chunk = sequence.prompt.subarray(sequence.prefilled, sequence.prefilled + this.options.prefillChunkTokens);
    sequence.inFlight = true;
    let logits: Float32Array;
    try {
      logits = await this.timed('prefill', this.engine.forward(sequence.handle, chunk, sequence.sampler === null));
    } catch (err) {
      if (this.landed(sequence)) this.finish(sequence, fromNativeError(err));
      return;
    }
    if (this.landed(sequence)) this.prefilled(sequence, chunk.length, logits);
  }

  /** `tokens` more of the prompt landed with these logits (every row's for a prompt-logits request, else the last row's). */
  private prefilled(sequence: Sequence, tokens: number, logits: Float32Array): void {
    const sampler = sequence.sampler;
    const whole = this.advancePrompt(sequence, tokens);
    if (!sampler) sequence.promptRows.push(logits);
    if (!whole) return;
    if (!sampler) {
      this.leave(sequence);
      sequence.promptLogits!.resolve(concatRows(sequence.promptRows));
      return;
    }
    void this.sampleRows([sequence], { rows: logits });
  }

  /** `tokens` more of the sequence's prompt are in its cache; true once the whole prompt is (a sampling one then decodes). */
  private advancePrompt(sequence: Sequence, tokens: number): boolean {
    sequence.prefilled += tokens;
    sequence.length += tokens;
    const whole = sequence.prefilled >= sequence.prompt.length;
    if (whole && sequence.sampler) sequence.phase = 'decode';
    return whole;
  }

  /**
   * Steps a greedy chain over `batch` may run: 0 unless every sequence running is in it and decodes plain greedy
   * with one banned id, no request waits and no prompt is being prefilled; at most what every reservation holds.
   */
  private greedyChainSteps(batch: Sequence[]): number {
    if (this.options.greedyChainSteps < 2 || batch.length === 0 || batch.length > MAX_GREEDY_ROWS) return 0;
    if (this.queue.length > 0 || batch.length !== this.active.size) return 0;
    const banned = batch[0].sampler!.greedyBannedId;
    if (banned === null || batch.some((s) => s.sampler!.greedyBannedId !== banned)) return 0;
    return Math.min(this.options.greedyChainSteps, ...batch.map((s) => s.reservedTokens - s.length));
  }

  /** Runs chains over `batch`, each next one started as soon as the previous lands, while they may go on. */
  private async greedyChain(batch: Sequence[], steps: number): Promise<void> {
    const seqs = Int32Array.from(batch, (s) => s.handle);
    const banned = batch[0].sampler!.greedyBannedId!;
    let ids = Int32Array.from(batch, (s) => s.input!);
    for (;;) {
      for (const sequence of batch) {
        sequence.input = null;
        sequence.inFlight = true;
        sequence.chainInFlight = true;
      }
      let picks: Int32Array;
      try {
        picks = await this.timed('decode', this.engine.decodeGreedy(seqs, ids, steps, this.capacity.sampleableVocab, banned));
      } catch (err) {
        const error = fromNativeError(err);
        for (const sequence of batch) {
          sequence.chainInFlight = false;
          if (this.landed(sequence)) this.finish(sequence, error);
        }
        return;
      }
      let goOn = true;
      batch.forEach((sequence, row) => {
        sequence.chainInFlight = false;
        if (!this.landed(sequence)) {
          goOn = false;
          return;
        }
        sequence.length += steps;
        const own = Array.from({ length: steps }, (_, step) => picks[step * batch.length + row]);
        const refused = own.findIndex((id) => id < 0);
        if (refused >= 0) {
          // Picks after a refused one were fed garbage: the sequence gets the good ones, then the sampler's error.
          sequence.chainError = greedyRefusal(own[refused]);
          goOn = false;
        }
        this.handOut(sequence, own.slice(0, refused < 0 ? steps : refused));
      });
      if (!goOn || this.closed || this.queue.length > 0 || this.active.size !== batch.length) return;
      steps = Math.min(this.options.greedyChainSteps, ...batch.map((s) => s.reservedTokens - s.length));
      if (steps < 2) return;
      ids = Int32Array.from(batch, (s) => s.lookahead[s.lookahead.length - 1] ?? s.lastGiven);
    }
  }

  /** A chain's picks for one sequence: the first settles a waiting consumer, the rest wait in its lookahead. */
  private handOut(sequence: Sequence, picks: number[]): void {
    if (sequence.waiter && picks.length > 0) {
      sequence.lastGiven = picks[0];
      this.pickedOnDeviceCount++;
      this.settle(sequence, picks[0]);
      picks = picks.slice(1);
    }
    sequence.lookahead.push(...picks);
    if (sequence.waiter && sequence.chainError) this.finish(sequence, sequence.chainError);
  }

  private async decodeStep(batch: Sequence[]): Promise<void> {
    const seqs = Int32Array.from(batch, (s) => s.handle);
    const ids = Int32Array.from(batch, (s) => s.input!);
    for (const sequence of batch) {
      sequence.input = null;
      sequence.inFlight = true;
    }
    let step: EngineRows;
    try {
      step = this.wantsCandidates(batch)
        ? { candidates: await this.timed('decode', this.engine.decodeBatchCandidates(seqs, ids, this.candidates, this.capacity.sampleableVocab)) }
        : { rows: await this.timed('decode', this.engine.decodeBatch(seqs, ids)) };
    } catch (err) {
      const error = fromNativeError(err);
      for (const sequence of batch) if (this.landed(sequence)) this.finish(sequence, error);
      return;
    }
    const rows = batch.map((sequence) => {
      if (!this.landed(sequence)) return null;
      sequence.length++;
      return sequence;
    });
    await this.sampleRows(rows, step);
  }

  /** Candidates unless every sampler of the batch needs its full row anyway. */
  private wantsCandidates(batch: Sequence[]): boolean {
    return this.candidates > 0 && batch.some((s) => !s.sampler!.needsFullRow);
  }

  /**
   * Settles the sequence of each row of a landed engine call (null: released meanwhile) with its sampler's pick: from
   * its full row, or from its candidates where they decide, else from its full row fetched (lastLogits) — the
   * engine keeps the rows until its next call, which waits for these fetches.
   */
  private async sampleRows(rows: Array<Sequence | null>, step: EngineRows): Promise<void> {
    const fullRowFetches: Promise<void>[] = [];
    rows.forEach((sequence, row) => {
      if (sequence === null) return;
      const sampler = sequence.sampler!;
      if ('rows' in step) {
        const vocab = step.rows.length / rows.length;
        this.sampledFromFullRow++;
        this.decide(sequence, () => sampler.sample(step.rows.subarray(row * vocab, (row + 1) * vocab)));
      } else if (!sampler.needsFullRow && this.decide(sequence, () => this.sampleFromCandidates(sampler, step.candidates, row))) {
        this.sampledFromCandidates++;
      } else {
        this.sampledFromFullRow++;
        const fetch = this.engine.lastLogits(row).then(
          (logits) => void this.decide(sequence, () => sampler.sample(logits)),
          (err) => this.finish(sequence, fromNativeError(err)),
        );
        fullRowFetches.push(fetch);
      }
    });
    await Promise.all(fullRowFetches);
  }

  private sampleFromCandidates(sampler: StepSampler, candidates: NativeCandidates, row: number): number | null {
    const k = this.candidates;
    return sampler.sampleFromCandidates({
      ids: candidates.ids.subarray(row * k, (row + 1) * k),
      logits: candidates.logits.subarray(row * k, (row + 1) * k),
      logSumExp: candidates.logSumExp[row],
    });
  }

  /**
   * Settles the sequence's step with the token `pick` samples; false when `pick` cannot tell (null). What `pick`
   * throws fails the sequence.
   */
  private decide(sequence: Sequence, pick: () => number | null): boolean {
    if (sequence.phase === 'done') return true; // released while its full row was fetched
    let token: number | null;
    try {
      token = pick();
    } catch (err) {
      this.finish(sequence, fromNativeError(err));
      return true;
    }
    if (token === null) return false;
    this.settle(sequence, token);
    return true;
  }
}

/** decodeGreedy's picks per call hold at most this many rows. */
const MAX_GREEDY_ROWS = 64;
/** The native forwardPrompts' most sequences per call (kMaxPromptSequences). */
const MAX_PROMPT_SEQUENCES = 64;

/** The error the sampler throws for a row whose pick decodeGreedy refused: -1 = a +Infinity logit, -2 = no finite one. */
function greedyRefusal(code: number): FlashMptError {
  return unsampleableRowError(code === -1 ? Infinity : -Infinity)!;
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
