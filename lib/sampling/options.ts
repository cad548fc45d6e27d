/**
 * Generation options: the zod schema is the single source of truth for names, ranges and defaults, so the API,
 * the CLI and the docs cannot drift apart.
 */
import { z } from 'zod';
import { FlashMptError } from '../errors';
import { zodIssuesMessage } from '../validation';

const MAX_STOP_STRINGS = 16;

// At most 15 digits keeps every id a safe integer.
const TOKEN_ID_KEY = /^\d{1,15}$/;

// Object keys are strings, so { 50256: -100 } arrives as { '50256': -100 }; the Map gives the sampler numeric ids.
const LogitBiasSchema = z
  .record(z.string().regex(TOKEN_ID_KEY), z.number().min(-100).max(100), {
    error: (issue) => (issue.code === 'invalid_key' ? `${String(issue.input)} is not a token id (a non-negative integer)` : undefined),
  })
  .transform((record) => new Map(Object.entries(record).map(([id, bias]) => [Number(id), bias])));

const StopSchema = z
  .union([z.string(), z.array(z.string())], { error: 'expected a string or an array of strings' })
  .transform((stop) => (typeof stop === 'string' ? [stop] : stop))
  .pipe(z.array(z.string().min(1, 'stop strings must not be empty')).max(MAX_STOP_STRINGS));

export const GenerateOptionsSchema = z.strictObject({
  maxTokens: z.int().min(1).default(16),
  /** 0 = greedy. */
  temperature: z.number().min(0).default(1),
  /** 0 = off. */
  topK: z.int().min(0).default(0),
  topP: z.number().gt(0).max(1).default(1),
  minP: z.number().min(0).lt(1).default(0),
  /** transformers' rule over prompt and generated tokens: positive logits divided, negative multiplied. */
  repetitionPenalty: z.number().gt(0).default(1),
  /** OpenAI's rule over generated tokens: logit -= count × frequencyPenalty + (count > 0) × presencePenalty. */
  presencePenalty: z.number().min(-2).max(2).default(0),
  frequencyPenalty: z.number().min(-2).max(2).default(0),
  /** Token id → value added to its logit; ±100 in practice bans or forces the token. */
  logitBias: LogitBiasSchema.default(() => new Map<number, number>()),
  /** Without a seed the sampler seeds itself from the OS's random source. */
  seed: z.int().optional(),
  stop: StopSchema.default(() => []),
  stopTokenIds: z.array(z.int().min(0)).default(() => []),
  /** Run to maxTokens: the eos token is never sampled. */
  ignoreEos: z.boolean().default(false),
  signal: z.instanceof(AbortSignal).optional(),
  maxContext: z.int().min(1).optional(),
  truncate: z.enum(['none', 'left']).default('none'),
});

export type GenerateOptions = z.input<typeof GenerateOptionsSchema>;
export type ResolvedGenerateOptions = z.output<typeof GenerateOptionsSchema>;

/** Validates and fills defaults; one FlashMptError names every bad field so a caller fixes them all at once. */
export function parseGenerateOptions(opts: unknown): ResolvedGenerateOptions {
  const parsed = GenerateOptionsSchema.safeParse(opts ?? {});
  if (!parsed.success) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `invalid generation options: ${zodIssuesMessage(parsed.error)}`, {
      details: parsed.error.issues,
    });
  }
  return parsed.data;
}
