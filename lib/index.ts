export { loadModel, createRandomModel, Model, LoadModelOptionsSchema } from './model';
export type { LoadModelOptions, GenerateResult, StreamChunk, FinishReason, Prompt } from './model';
export { parseConfig, loadConfig } from './config';
export type { MptConfig } from './config';
export { Tokenizer } from './tokenizer';
export { FlashMptError } from './errors';
export type { ErrorCode } from './errors';
export { GenerateOptionsSchema, parseGenerateOptions } from './sampling';
export type { GenerateOptions } from './sampling';
