/** GET /metrics: the scheduler's state in the Prometheus text exposition format. */
import type { SchedulerMetrics } from '../scheduler';

export function prometheusText(m: SchedulerMetrics): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
  };
  metric('flash_mpt_queue_length', 'gauge', 'Requests waiting for a sequence slot.', m.queueLength);
  metric('flash_mpt_running_sequences', 'gauge', 'Sequences holding a slot (prefilling or decoding).', m.runningSequences);
  metric('flash_mpt_generated_tokens_total', 'counter', 'Tokens generated since the model was loaded.', m.generatedTokensTotal);
  metric('flash_mpt_tokens_per_second', 'gauge', 'Tokens generated per second over the last 10 seconds.', m.tokensPerSecond);
  metric('flash_mpt_kv_blocks_in_use', 'gauge', `KV cache blocks of ${m.kvBlockTokens} tokens held by running sequences.`, m.kvBlocksInUse);
  metric('flash_mpt_kv_blocks_total', 'gauge', `KV cache blocks of ${m.kvBlockTokens} tokens in all sequence slots.`, m.kvBlocksTotal);
  metric('flash_mpt_sampled_from_candidates_total', 'counter', "Tokens sampled from a decode step's top-K candidates alone.", m.sampledFromCandidatesTotal);
  metric('flash_mpt_sampled_from_full_row_total', 'counter', 'Tokens sampled from a full row of logits.', m.sampledFromFullRowTotal);
  return `${lines.join('\n')}\n`;
}
