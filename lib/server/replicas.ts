/**
 * Several replicas of one model behind one server, one per device: each request goes to the live replica with the
 * least load (running + queued sequences), equals taking turns, so N GPUs serve N times the sequences of one.
 */
import { FlashMptError } from '../errors';
import { loadModel, LoadModelOptions, LoadProgress, Model } from '../model';

export interface Replica {
  /** Its name in /metrics and /health: the device ('cuda:1'), numbered when the pool repeats it ('cpu#0'). */
  readonly label: string;
  readonly model: Model;
  /** Requests routed to it. */
  readonly requests: number;
}

interface MutableReplica {
  label: string;
  model: Model;
  requests: number;
}

/** loadModel's options for every replica; the devices come from ReplicaPool.load's list. */
export type ReplicaLoadOptions = Omit<LoadModelOptions, 'device'>;

export class ReplicaPool implements AsyncDisposable {
  private readonly members: MutableReplica[];
  /** Where the next search for the least-loaded replica starts, so replicas with equal load take turns. */
  private cursor = 0;

  /** Replicas of one checkpoint; they must share maxContext, which /v1/models reports and requests are checked against. */
  constructor(models: readonly Model[]) {
    if (models.length === 0) throw new FlashMptError('E_INVALID_ARGUMENT', 'a replica pool needs at least one model');
    if (new Set(models).size !== models.length) throw new FlashMptError('E_INVALID_ARGUMENT', 'a replica pool cannot hold the same model twice');
    const contexts = new Set(models.map((m) => m.maxContext));
    if (contexts.size > 1) {
      throw new FlashMptError('E_INVALID_ARGUMENT', `replicas must share maxContext, got ${[...contexts].join(', ')}`);
    }
    const seen = new Map<string, number>();
    const repeated = (device: string) => models.filter((m) => m.device === device).length > 1;
    this.members = models.map((model) => {
      const ordinal = seen.get(model.device) ?? 0;
      seen.set(model.device, ordinal + 1);
      return { label: repeated(model.device) ? `${model.device}#${ordinal}` : model.device, model, requests: 0 };
    });
  }

  /**
   * Loads the folder once per device, in parallel. If any load fails, the replicas already loaded are disposed
   * and the first error is thrown. `onProgress` hears the bytes of all loads together.
   */
  static async load(dir: string, devices: readonly string[], options: ReplicaLoadOptions = {}): Promise<ReplicaPool> {
    if (devices.length === 0) throw new FlashMptError('E_INVALID_ARGUMENT', 'a replica pool needs at least one device');
    const { onProgress, ...rest } = options;
    const loaded = new Array<number>(devices.length).fill(0);
    const progressOf = (index: number) =>
      onProgress &&
      (({ loadedBytes, totalBytes }: LoadProgress) => {
        loaded[index] = loadedBytes;
        // Every replica reads the same checkpoint.
        onProgress({ loadedBytes: loaded.reduce((a, b) => a + b, 0), totalBytes: totalBytes * devices.length });
      });
    const results = await Promise.allSettled(devices.map((device, i) => loadModel(dir, { ...rest, device, onProgress: progressOf(i) })));
    const models = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) {
      await Promise.all(models.map((m) => m.dispose()));
      throw failure.reason;
    }
    return new ReplicaPool(models);
  }

  get replicas(): readonly Replica[] {
    return this.members;
  }

  get maxContext(): number {
    return this.members[0].model.maxContext;
  }

  /**
   * Picks the replica for a new request and counts the request on it: the live one with the fewest running +
   * queued sequences, among equals the first after the previous pick. E_DISPOSED when every replica is disposed.
   * A model's stream opens its sequence on its first next(): call it before routing the next request, or the
   * next pick does not see this one.
   */
  route(): Replica {
    let best: MutableReplica | undefined;
    let bestLoad = Infinity;
    let bestIndex = 0;
    for (let k = 0; k < this.members.length; k++) {
      const index = (this.cursor + k) % this.members.length;
      const replica = this.members[index];
      if (replica.model.disposed) continue;
      const { runningSequences, queueLength } = replica.model.schedulerMetrics();
      if (runningSequences + queueLength < bestLoad) {
        best = replica;
        bestLoad = runningSequences + queueLength;
        bestIndex = index;
      }
    }
    if (!best) throw new FlashMptError('E_DISPOSED', 'every replica of this model has been disposed');
    this.cursor = (bestIndex + 1) % this.members.length;
    best.requests++;
    return best;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.members.map((r) => r.model.dispose()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
