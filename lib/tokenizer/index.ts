export { Tokenizer } from './tokenizer';
export type { DecodeOptions, EncodeOptions, TokenizerOptions } from './tokenizer';
export type { StreamingDecoder } from './streaming-decoder';
