export { KV_BLOCK_TOKENS, Scheduler } from './scheduler';
export type { OpenOptions, ScheduledSequence, SchedulerCapacity, SchedulerMetrics, SchedulerOptions, StepSampler } from './scheduler';
