export { Scheduler } from './scheduler';
export type { OpenOptions, ScheduledSequence, SchedulerCapacity, SchedulerMetrics, SchedulerOptions, StepSampler } from './scheduler';
