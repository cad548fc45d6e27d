import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlashMptError } from '../errors';
import { AddedToken, AddedTokenMatcher } from './added-tokens';
import { BpeModel } from './bpe';
import { tokenToBytes } from './byte-level';
import { preTokenEnd } from './pretokenize';
import { parseTokenizerConfig, parseTokenizerJson, TokenizerConfig } from './schema';
import { StreamingDecoder, Utf8StreamingDecoder } from './streaming-decoder';
import { nfcLikeReference } from './unicode';

export interface EncodeOptions {
  /** Recognize special added tokens such as `<|endoftext|>` in the text (default true); when false they
   * are encoded as the plain text they spell. */
  allowSpecial?: boolean;
}

export interface DecodeOptions {
  /** Leave special tokens out of the text (default false). */
  skipSpecialTokens?: boolean;
}

export interface TokenizerOptions {
  /** Parsed tokenizer_config.json, whose `eos_token` names the end-of-sequence token. */
  tokenizerConfig?: unknown;
}

/** Code units at or above U+0300 (combining marks onward): below that, NFC changes nothing. */
const MAY_NEED_NFC = /[^\u0000-\u02ff]/;
const SURROGATE = /[\ud800-\udfff]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const DEFAULT_EOS = '<|endoftext|>';
/** Shared by all one-shot decodes (see Utf8StreamingDecoder for why it matches Hugging Face). */
const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });

function readJsonFile(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FlashMptError('E_TOKENIZER', `${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

function readFileSyncOrThrow(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FlashMptError('E_TOKENIZER', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function configPathBeside(tokenizerPath: string): string {
  return path.join(path.dirname(tokenizerPath), 'tokenizer_config.json');
}

/**
 * Exact byte-level BPE tokenizer for Hugging Face tokenizer.json files (GPT-NeoX-20B, GPT-2, Pythia, MPT):
 * the ids equal those of Hugging Face `tokenizers` (checked against it on random text from all planes).
 *
 * Pipeline, as in Hugging Face: added tokens with `normalized: false` are split out of the raw text; each
 * remaining piece is NFC-normalized and split on the normalized added tokens; the rest goes through the
 * ByteLevel pre-tokenizer (GPT-2 regex) and BPE, with a cache of word → ids.
 */
export class Tokenizer {
  /** One past the largest id (vocabulary and added tokens). */
  readonly vocabSize: number;
  /** The end-of-sequence id: tokenizer_config.json's `eos_token`, else `<|endoftext|>` if present. */
  readonly eosTokenId: number | undefined;

  private readonly model: BpeModel;
  private readonly addedById = new Map<number, AddedToken>();
  private readonly addedByContent = new Map<string, number>();
  private readonly rawMatcher: AddedTokenMatcher;
  private readonly normalizedMatcher: AddedTokenMatcher;
  private readonly nfc: boolean;
  private readonly addPrefixSpace: boolean;
  private readonly useRegex: boolean;
  private readonly specialIds: Uint8Array;
  /** Bytes of each id, filled on first decode. */
  private readonly bytesById: (Uint8Array | undefined)[];

  private constructor(json: unknown, config: TokenizerConfig | undefined) {
    const spec = parseTokenizerJson(json);
    this.model = new BpeModel({
      vocab: spec.model.vocab,
      merges: spec.model.merges,
      unkToken: spec.model.unk_token ?? null,
      fuseUnk: spec.model.fuse_unk,
      ignoreMerges: spec.model.ignore_merges,
    });
    const normalizer = spec.normalizer ?? null;
    this.nfc = normalizer !== null && (normalizer.type === 'NFC' || normalizer.normalizers.length > 0);
    this.addPrefixSpace = spec.pre_tokenizer.add_prefix_space;
    this.useRegex = spec.pre_tokenizer.use_regex;

    const added: AddedToken[] = spec.added_tokens.map((t) => ({
      id: t.id,
      content: t.content,
      special: t.special,
      singleWord: t.single_word,
      lstrip: t.lstrip,
      rstrip: t.rstrip,
      normalized: t.normalized ?? !t.special,
    }));
    let maxId = this.model.tokens.length - 1;
    for (const token of added) {
      this.addedById.set(token.id, token);
      if (!this.addedByContent.has(token.content)) this.addedByContent.set(token.content, token.id);
      maxId = Math.max(maxId, token.id);
    }
    this.vocabSize = maxId + 1;
    this.specialIds = new Uint8Array(this.vocabSize);
    this.bytesById = new Array<Uint8Array | undefined>(this.vocabSize);
    for (const token of added) if (token.special) this.specialIds[token.id] = 1;

    this.rawMatcher = new AddedTokenMatcher(
      added.filter((t) => !t.normalized),
      (t) => t.content,
    );
    this.normalizedMatcher = new AddedTokenMatcher(
      added.filter((t) => t.normalized),
      (t) => this.normalize(t.content),
    );
    this.eosTokenId = this.resolveEos(config);
  }

  /** Builds a tokenizer from a parsed tokenizer.json object (its `model.vocab` is used in place: leave it unchanged). */
  static fromJSON(json: unknown, options: TokenizerOptions = {}): Tokenizer {
    const config = options.tokenizerConfig === undefined ? undefined : parseTokenizerConfig(options.tokenizerConfig);
    return new Tokenizer(json, config);
  }

  /** Loads tokenizer.json (and tokenizer_config.json beside it, when present). */
  static fromFileSync(file: string): Tokenizer {
    const json = readJsonFile(file, readFileSyncOrThrow(file));
    const configPath = configPathBeside(file);
    const config = fs.existsSync(configPath) ? readJsonFile(configPath, readFileSyncOrThrow(configPath)) : undefined;
    return Tokenizer.fromJSON(json, { tokenizerConfig: config });
  }

  /** Loads tokenizer.json (and tokenizer_config.json beside it, when present) without blocking on I/O. */
  static async fromFile(file: string): Promise<Tokenizer> {
    const configPath = configPathBeside(file);
    const [text, configText] = await Promise.all([
      fs.promises.readFile(file, 'utf8').catch((err: Error) => {
        throw new FlashMptError('E_TOKENIZER', `cannot read ${file}: ${err.message}`, { cause: err });
      }),
      fs.promises.readFile(configPath, 'utf8').catch(() => undefined),
    ]);
    const config = configText === undefined ? undefined : readJsonFile(configPath, configText);
    return Tokenizer.fromJSON(readJsonFile(file, text), { tokenizerConfig: config });
  }

  private resolveEos(config: TokenizerConfig | undefined): number | undefined {
    const eos = config?.eos_token;
    if (eos === undefined || eos === null) return this.tokenToId(DEFAULT_EOS);
    const content = typeof eos === 'string' ? eos : eos.content;
    const id = this.tokenToId(content);
    if (id === undefined) {
      throw new FlashMptError('E_TOKENIZER', `tokenizer_config.json: eos_token: ${JSON.stringify(content)} is not in the vocabulary`, {
        details: { field: 'eos_token' },
      });
    }
    return id;
  }

  private normalize(text: string): string {
    return this.nfc && MAY_NEED_NFC.test(text) ? nfcLikeReference(text) : text;
  }

  /**
   * Token ids of `text`, as Hugging Face's encode with add_special_tokens=False (no BOS/EOS from a
   * post-processor template). Lone surrogates count as U+FFFD, as when the string crosses into Rust.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new FlashMptError('E_INVALID_ARGUMENT', `encode expects a string, got ${typeof text}`);
    }
    const allowSpecial = options.allowSpecial ?? true;
    if (SURROGATE.test(text)) text = text.replace(LONE_SURROGATE, '\ufffd');
    const ids: number[] = [];
    if (this.rawMatcher.isEmpty) {
      this.encodeNormalizing(text, allowSpecial, ids);
      return ids;
    }
    for (const split of this.rawMatcher.split(text, allowSpecial)) {
      if (split.id >= 0) ids.push(split.id);
      else this.encodeNormalizing(text.slice(split.start, split.end), allowSpecial, ids);
    }
    return ids;
  }

  private encodeNormalizing(raw: string, allowSpecial: boolean, ids: number[]): void {
    const text = this.normalize(raw);
    if (this.normalizedMatcher.isEmpty) {
      this.encodeOrdinary(text, 0, text.length, ids);
      return;
    }
    for (const split of this.normalizedMatcher.split(text, allowSpecial)) {
      if (split.id >= 0) ids.push(split.id);
      else this.encodeOrdinary(text, split.start, split.end, ids);
    }
  }

  /** Pre-tokenizes text[start, end), which holds no added token, and appends the BPE ids of each pre-token. */
  private encodeOrdinary(text: string, start: number, end: number, ids: number[]): void {
    if (start === end) return;
    if (this.addPrefixSpace && text.charCodeAt(start) !== 0x20) {
      text = ' ' + text.slice(start, end);
      start = 0;
      end = text.length;
    }
    if (!this.useRegex) {
      this.model.encodeWord(text, start, end, ids);
      return;
    }
    while (start < end) {
      const stop = preTokenEnd(text, start, end);
      this.model.encodeWord(text, start, stop, ids);
      start = stop;
    }
  }

  /** Text of `ids`; malformed UTF-8 across tokens becomes U+FFFD exactly as in Hugging Face. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skipSpecial = options.skipSpecialTokens ?? false;
    const parts: Uint8Array[] = [];
    let length = 0;
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.bytesOf(ids[i], skipSpecial);
      if (bytes === undefined) continue;
      parts.push(bytes);
      length += bytes.length;
    }
    const joined = new Uint8Array(length);
    let offset = 0;
    for (const bytes of parts) {
      joined.set(bytes, offset);
      offset += bytes.length;
    }
    return utf8Decoder.decode(joined);
  }

  /** A decoder that turns ids into text one at a time (see StreamingDecoder). */
  createDecoder(options: DecodeOptions = {}): StreamingDecoder {
    const skipSpecial = options.skipSpecialTokens ?? false;
    return new Utf8StreamingDecoder((id) => this.bytesOf(id, skipSpecial));
  }

  /** Id of a vocabulary entry or added token (byte-level spelling for the vocabulary: "Ġworld"). */
  tokenToId(token: string): number | undefined {
    return this.addedByContent.get(token) ?? this.model.tokenToId(token);
  }

  /** The token string of an id, or undefined when no token has it. */
  idToToken(id: number): string | undefined {
    return this.addedById.get(id)?.content ?? this.model.tokens[id];
  }

  /** Bytes of one id for decoding; undefined when skipped; E_TOKEN_RANGE for ids with no token. */
  private bytesOf(id: number, skipSpecial: boolean): Uint8Array | undefined {
    let bytes = this.bytesById[id];
    if (bytes === undefined) {
      const token = Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.idToToken(id) : undefined;
      if (token === undefined) {
        throw new FlashMptError('E_TOKEN_RANGE', `token id ${id} is not in the vocabulary (size ${this.vocabSize})`, {
          details: { id, vocabSize: this.vocabSize },
        });
      }
      bytes = tokenToBytes(token);
      this.bytesById[id] = bytes;
    }
    return skipSpecial && this.specialIds[id] === 1 ? undefined : bytes;
  }
}
