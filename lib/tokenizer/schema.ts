import { z } from 'zod';
import { FlashMptError } from '../errors';
import { MAX_TOKEN_ID } from './bpe';

/**
 * The subset of Hugging Face's tokenizer.json that byte-level BPE tokenizers (GPT-2, GPT-NeoX, Pythia,
 * MPT) use. Anything that would change the ids of a text and is not implemented is rejected rather
 * than ignored. `truncation` and `padding` are not read: they configure HF's batch API, not the ids of
 * one text.
 */

const nfc = z.object({ type: z.literal('NFC') });

const normalizerSchema = z
  .union([z.null(), nfc, z.object({ type: z.literal('Sequence'), normalizers: z.array(nfc) })], {
    error: 'unsupported normalizer (expected null, {"type":"NFC"} or a Sequence of NFC)',
  })
  .optional();

const addedTokenSchema = z.object({
  // Bounded like vocabulary ids: the id → token tables are sized by the largest id.
  id: z.number().int().nonnegative().lt(MAX_TOKEN_ID),
  content: z.string().min(1),
  special: z.boolean().default(false),
  single_word: z.boolean().default(false),
  lstrip: z.boolean().default(false),
  rstrip: z.boolean().default(false),
  normalized: z.boolean().optional(),
});

const byteLevelPreTokenizer = z.object(
  {
    type: z.literal('ByteLevel', { error: 'unsupported pre-tokenizer (expected "ByteLevel")' }),
    add_prefix_space: z.boolean().default(true),
    use_regex: z.boolean().default(true),
  },
  { error: 'expected a ByteLevel pre-tokenizer object' },
);

const noSuffix = z.union([z.null(), z.literal('')], { error: 'not supported by byte-level BPE (expected null)' }).optional();

const modelSchema = z.object(
  {
    type: z.literal('BPE', { error: 'unsupported model (expected "BPE")' }).optional(),
    dropout: z
      .number()
      .nullish()
      .refine((p) => p === null || p === undefined || p === 0, { error: 'BPE dropout makes ids random; expected null' }),
    unk_token: z.string().nullish(),
    continuing_subword_prefix: noSuffix,
    end_of_word_suffix: noSuffix,
    fuse_unk: z.boolean().default(false),
    byte_fallback: z.literal(false, { error: 'byte_fallback is not supported (expected false)' }).optional(),
    ignore_merges: z.boolean().default(false),
    // Entries are checked while the tables are built: validating 50k of them here costs ~100 ms.
    vocab: z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
      error: 'expected an object mapping tokens to ids',
    }),
    merges: z.custom<unknown[]>((v) => Array.isArray(v), { error: 'expected an array of merges' }),
  },
  { error: 'expected a BPE model object' },
);

const tokenizerJsonSchema = z.object(
  {
    added_tokens: z.array(addedTokenSchema).default([]),
    normalizer: normalizerSchema,
    pre_tokenizer: byteLevelPreTokenizer,
    // Post-processors only add tokens around the text (HF's add_special_tokens); encode returns the
    // text's own ids and leaves BOS/EOS to the caller, so a template is accepted and not applied.
    post_processor: z
      .union([z.null(), z.object({ type: z.enum(['ByteLevel', 'TemplateProcessing']) })], {
        error: 'unsupported post-processor (expected null, ByteLevel or TemplateProcessing)',
      })
      .optional(),
    decoder: z.object(
      { type: z.literal('ByteLevel', { error: 'unsupported decoder (expected "ByteLevel")' }) },
      { error: 'expected a ByteLevel decoder object' },
    ),
    model: modelSchema,
  },
  { error: 'expected a JSON object' },
);

export type TokenizerJson = z.infer<typeof tokenizerJsonSchema>;

const tokenizerConfigSchema = z.object(
  {
    eos_token: z
      .union([z.string(), z.object({ content: z.string() }), z.null()], {
        error: 'expected a string, an object with "content", or null',
      })
      .optional(),
  },
  { error: 'expected a JSON object' },
);

export type TokenizerConfig = z.infer<typeof tokenizerConfigSchema>;

function formatPath(path: readonly PropertyKey[]): string {
  let formatted = '';
  for (const key of path) {
    formatted += typeof key === 'number' ? `[${key}]` : formatted === '' ? String(key) : `.${String(key)}`;
  }
  return formatted === '' ? '(root)' : formatted;
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, file: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = formatPath(issue.path);
  throw new FlashMptError('E_TOKENIZER', `${file}: ${field}: ${issue.message}`, {
    details: { field, issues: result.error.issues },
  });
}

/** Validates a parsed tokenizer.json; a FlashMptError E_TOKENIZER names the first bad field. */
export function parseTokenizerJson(value: unknown): TokenizerJson {
  return parseWith(tokenizerJsonSchema, value, 'tokenizer.json');
}

/** Validates a parsed tokenizer_config.json (only `eos_token` is read). */
export function parseTokenizerConfig(value: unknown): TokenizerConfig {
  return parseWith(tokenizerConfigSchema, value, 'tokenizer_config.json');
}
