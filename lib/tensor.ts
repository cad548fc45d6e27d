/**
 * Tensors and the CUDA kernels as functions on them, for kernel tests and power users. A Tensor lives on the
 * CPU or a CUDA device (dtype f32 | bf16 | f16); every kernel also runs on CPU tensors, where it computes its
 * fp32 reference (rounded to the output dtype), so a CUDA result can be checked against the same call on the
 * CPU. Calls are synchronous; free device memory early with dispose() (or `using`).
 */
import { FlashMptError, fromNativeError } from './errors';
import { loadNative } from './native';

export type TensorDevice = 'cpu' | 'cuda';
export type TensorDType = 'f32' | 'bf16' | 'f16';

/** The addon's Tensor object (csrc/binding/addon_tensor.h). */
interface NativeTensor {
  readonly device: TensorDevice;
  readonly dtype: TensorDType;
  readonly shape: number[];
  readonly disposed: boolean;
  toFloat32Array(): Float32Array;
  dispose(): void;
}

interface NativeTensorClass {
  fromArray(values: Float32Array, shape: number[], options: { dtype?: TensorDType; device?: TensorDevice }): NativeTensor;
}

/** Options of the attention kernels. ALiBi adds slope_h · (j − i) for key position j and query position i. */
export interface AttentionOptions {
  /** Causal mask, bottom-right aligned: query i of Sq sits at position Sk − Sq + i. Default false. */
  causal?: boolean;
  /** One slope per head; omit for no ALiBi. */
  alibiSlopes?: ArrayLike<number>;
  /** Default 1/√head_dim. */
  softmaxScale?: number;
}

export interface LayerNormOptions {
  /** f32 [cols]. */
  bias?: Tensor;
  /** Same shape and dtype as x: normalizes x + residual and stores x + residual back into x. */
  residual?: Tensor;
  eps?: number;
  /** Output dtype; default x's. */
  outDtype?: TensorDType;
}

export interface MatmulOptions {
  /** f32 [N], added after alpha scaling. */
  bias?: Tensor;
  /** Exact (erf) GELU on the output; on CUDA tensors it needs a bf16/f16 output. */
  gelu?: boolean;
  alpha?: number;
  /** 'f32' or a's dtype (default). */
  outDtype?: TensorDType;
  /** An f32 [M, N] tensor that receives c += a·wᵀ (the residual update); it is returned. */
  accumulate?: Tensor;
}

export interface QkvEpilogueOptions {
  /** [slots, S, d_model], qkv's dtype; k and v are written into them. */
  kCache: Tensor;
  vCache: Tensor;
  /** Row r goes to (slot, position + r) ... */
  slot?: number;
  position?: number;
  /** ... or to (slots[r], positions[r]); a negative position skips the write. */
  slots?: ArrayLike<number>;
  positions?: ArrayLike<number>;
  /** f32 [d_model]: QK-LayerNorm over the full width when given. */
  qLnWeight?: Tensor;
  qLnBias?: Tensor;
  kLnWeight?: Tensor;
  kLnBias?: Tensor;
  /** Clamp qkv to [-clip, clip] first when > 0. */
  clip?: number;
  eps?: number;
}

export interface TopKResult {
  /** rows × k logits, descending per row (ties: lower id first; NaN counts as −Infinity). */
  values: Float32Array;
  indices: Int32Array;
  /** log-sum-exp of each full row (NaN counts as −Infinity). */
  lse: Float32Array;
}

interface NativeKernels {
  flashAttention(q: NativeTensor, k: NativeTensor, v: NativeTensor, options: object): NativeTensor;
  naiveAttention(q: NativeTensor, k: NativeTensor, v: NativeTensor, options: object): NativeTensor;
  decodeAttention(q: NativeTensor, k: NativeTensor, v: NativeTensor, seqLens: number[], options: object): NativeTensor;
  layerNorm(x: NativeTensor, weight: NativeTensor, options: object): NativeTensor;
  gelu(x: NativeTensor): NativeTensor;
  matmul(a: NativeTensor, w: NativeTensor, options: object): NativeTensor;
  qkvEpilogue(qkv: NativeTensor, options: object): NativeTensor;
  topK(logits: NativeTensor, k: number): TopKResult;
}

function addon(): { Tensor: NativeTensorClass; kernels: NativeKernels } {
  return loadNative() as unknown as { Tensor: NativeTensorClass; kernels: NativeKernels };
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNativeError(err);
  }
}

export class Tensor implements Disposable {
  /** @internal */
  readonly native: NativeTensor;

  private constructor(native: NativeTensor) {
    this.native = native;
  }

  /** @internal */
  static wrap(native: NativeTensor): Tensor {
    return new Tensor(native);
  }

  /** A tensor of `shape` holding `values` (row-major), rounded to `dtype` (default f32), on `device` (default cpu). */
  static fromArray(values: Float32Array | ArrayLike<number>, shape: number[], options: { dtype?: TensorDType; device?: TensorDevice } = {}): Tensor {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    return new Tensor(call(() => addon().Tensor.fromArray(data, shape, options)));
  }

  get device(): TensorDevice {
    return call(() => this.native.device);
  }
  get dtype(): TensorDType {
    return call(() => this.native.dtype);
  }
  get shape(): number[] {
    return call(() => this.native.shape);
  }
  get disposed(): boolean {
    return this.native.disposed;
  }

  /** The contents as fp32, copied to the host. */
  toFloat32Array(): Float32Array {
    return call(() => this.native.toFloat32Array());
  }

  /** Frees the memory now (later calls fail with E_DISPOSED); otherwise it goes with garbage collection. */
  dispose(): void {
    this.native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function unwrapOptions<T extends object>(options: T | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options ?? {})) {
    if (value instanceof Tensor) out[key] = value.native;
    else if (value !== undefined && value !== null && typeof value === 'object' && 'length' in value) out[key] = Array.from(value as ArrayLike<number>);
    else out[key] = value;
  }
  return out;
}

function tensorArg(t: Tensor, what: string): NativeTensor {
  if (!(t instanceof Tensor)) throw new FlashMptError('E_INVALID_ARGUMENT', `${what} must be a Tensor`);
  return t.native;
}

export const kernels = {
  /** Fused flash attention: q [B, Sq, H, D], k and v [B, Sk, H, D] → [B, Sq, H, D]. */
  flashAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
    return Tensor.wrap(call(() => addon().kernels.flashAttention(tensorArg(q, 'q'), tensorArg(k, 'k'), tensorArg(v, 'v'), unwrapOptions(options))));
  },
  /** The naive attention in the input precision (scores and probabilities rounded), same shapes. */
  naiveAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
    return Tensor.wrap(call(() => addon().kernels.naiveAttention(tensorArg(q, 'q'), tensorArg(k, 'k'), tensorArg(v, 'v'), unwrapOptions(options))));
  },
  /** Split-KV decode attention: q [B, H, D], caches [B, S, H, D]; sequence b attends to its first seqLens[b] keys. */
  decodeAttention(q: Tensor, kCache: Tensor, vCache: Tensor, seqLens: ArrayLike<number>, options: Omit<AttentionOptions, 'causal'> = {}): Tensor {
    return Tensor.wrap(
      call(() => addon().kernels.decodeAttention(tensorArg(q, 'q'), tensorArg(kCache, 'kCache'), tensorArg(vCache, 'vCache'), Array.from(seqLens), unwrapOptions(options))),
    );
  },
  /** LayerNorm over the last dimension with fp32 statistics; weight (and bias) f32 [cols]. */
  layerNorm(x: Tensor, weight: Tensor, options: LayerNormOptions = {}): Tensor {
    return Tensor.wrap(call(() => addon().kernels.layerNorm(tensorArg(x, 'x'), tensorArg(weight, 'weight'), unwrapOptions(options))));
  },
  /** Exact GELU, x · Φ(x). */
  gelu(x: Tensor): Tensor {
    return Tensor.wrap(call(() => addon().kernels.gelu(tensorArg(x, 'x'))));
  },
  /** c = alpha · a·wᵀ (+ bias) with a [M, K] and w [N, K] (PyTorch's Linear layout). */
  matmul(a: Tensor, w: Tensor, options: MatmulOptions = {}): Tensor {
    if (options.accumulate) {
      call(() => addon().kernels.matmul(tensorArg(a, 'a'), tensorArg(w, 'w'), unwrapOptions(options)));
      return options.accumulate;
    }
    return Tensor.wrap(call(() => addon().kernels.matmul(tensorArg(a, 'a'), tensorArg(w, 'w'), unwrapOptions(options))));
  },
  /** qkv [rows, 3·d] → q [rows, d] (clipped, QK-LayerNormed); k and v land in the caches. */
  qkvEpilogue(qkv: Tensor, options: QkvEpilogueOptions): Tensor {
    return Tensor.wrap(call(() => addon().kernels.qkvEpilogue(tensorArg(qkv, 'qkv'), unwrapOptions(options))));
  },
  /** The k (≤ 1024 on the GPU) largest logits of each row of an f32 [rows, vocab] tensor, with ids and the row's log-sum-exp. */
  topK(logits: Tensor, k: number): TopKResult {
    return call(() => addon().kernels.topK(tensorArg(logits, 'logits'), k));
  },
};
