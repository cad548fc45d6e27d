/**
 * Every failure flash-mpt reports is a FlashMptError with a stable `code`, so callers can branch on
 * `err.code` instead of parsing messages. Native errors arrive as plain Errors whose message starts
 * with `[CODE] ` and are turned into FlashMptError by `fromNativeError`.
 */
export type ErrorCode =
  | 'E_CONFIG' // config.json missing, malformed, or with a missing/ill-typed field
  | 'E_CHECKPOINT' // weights files missing, truncated, inconsistent or of the wrong shape
  | 'E_UNSAFE_PICKLE' // a pytorch_model.bin pickle names a global we refuse to load
  | 'E_TOKENIZER' // tokenizer.json malformed, or a text prompt given to a model without a tokenizer
  | 'E_INVALID_ARGUMENT' // bad options or inputs (validated with zod)
  | 'E_TOKEN_RANGE' // a token id outside the vocabulary
  | 'E_CONTEXT_LENGTH' // prompt + maxTokens beyond the context
  | 'E_OUT_OF_MEMORY' // device or host memory exhausted; the model stays usable
  | 'E_DEVICE' // no such device, CUDA unavailable, or a CUDA error
  | 'E_NATIVE' // the native addon could not be loaded
  | 'E_DISPOSED' // a call on a model or tensor after dispose()
  | 'E_ABORTED' // the caller's AbortSignal fired
  | 'E_QUEUE_FULL' // the scheduler's queue is full or its wait timed out
  | 'E_INTERNAL';

export class FlashMptError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FlashMptError';
    this.code = code;
    this.details = options?.details;
  }
}

const NATIVE_CODE = /^\[(E_[A-Z_]+)\]\s*/;

/** Native code throws `Error("[E_CODE] message")`; give it the same typed shape as JS errors. */
export function fromNativeError(err: unknown): FlashMptError {
  if (err instanceof FlashMptError) return err;
  // Not `instanceof Error`: the addon's errors belong to the realm that loaded it, which need not be the caller's
  // (jest runs tests in vm contexts).
  const message = typeof (err as { message?: unknown } | null)?.message === 'string' ? (err as Error).message : String(err);
  const match = NATIVE_CODE.exec(message);
  const code = (match ? match[1] : 'E_NATIVE') as ErrorCode;
  return new FlashMptError(code, match ? message.slice(match[0].length) : message, { cause: err });
}
