export { GenerateOptionsSchema, parseGenerateOptions } from './options';
export type { GenerateOptions, ResolvedGenerateOptions } from './options';
export { SeededRng } from './rng';
export { Sampler, unsampleableRowError } from './sampler';
export type { Candidates, SamplerVocab } from './sampler';
export { StopMatcher } from './stop';
