/**
 * GET /metrics: the replicas' schedulers in the Prometheus text exposition format. Each metric has its total over
 * the replicas unlabelled (what a single-model server always showed), then one sample per replica labelled
 * replica="cuda:0"; a query that sums a metric should select one kind or the other.
 */
import type { SchedulerMetrics } from '../scheduler';
import type { Replica } from './replicas';

export function prometheusText(replicas: readonly Replica[]): string {
  const snapshots = replicas.map((replica) => ({ replica, m: replica.model.schedulerMetrics() }));
  const blockTokens = snapshots[0].m.kvBlockTokens;
  const lines: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, value: (m: SchedulerMetrics, replica: Replica) => number) => {
    const values = snapshots.map(({ replica, m }) => value(m, replica));
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${values.reduce((a, b) => a + b, 0)}`);
    snapshots.forEach(({ replica }, i) => lines.push(`${name}{replica="${replica.label}"} ${values[i]}`));
  };
  metric('flash_mpt_requests_total', 'counter', 'Completion requests routed to the replica.', (_m, replica) => replica.requests);
  metric('flash_mpt_queue_length', 'gauge', 'Requests waiting for a sequence slot.', (m) => m.queueLength);
  metric('flash_mpt_running_sequences', 'gauge', 'Sequences holding a slot (prefilling or decoding).', (m) => m.runningSequences);
  metric('flash_mpt_generated_tokens_total', 'counter', 'Tokens generated since the model was loaded.', (m) => m.generatedTokensTotal);
  metric('flash_mpt_tokens_per_second', 'gauge', 'Tokens generated per second over the last 10 seconds.', (m) => m.tokensPerSecond);
  metric('flash_mpt_kv_blocks_in_use', 'gauge', `KV cache blocks of ${blockTokens} tokens held by running sequences.`, (m) => m.kvBlocksInUse);
  metric('flash_mpt_kv_blocks_total', 'gauge', `KV cache blocks of ${blockTokens} tokens in all sequence slots.`, (m) => m.kvBlocksTotal);
  metric('flash_mpt_sampled_from_candidates_total', 'counter', "Tokens sampled from the top-K candidates of a decode step or a prompt's last row alone.", (m) => m.sampledFromCandidatesTotal);
  metric('flash_mpt_sampled_from_full_row_total', 'counter', 'Tokens sampled from a full row of logits.', (m) => m.sampledFromFullRowTotal);
  metric('flash_mpt_picked_on_device_total', 'counter', 'Greedy tokens picked on the device by chained decode steps.', (m) => m.pickedOnDeviceTotal);
  metric('flash_mpt_prefill_seconds_total', 'counter', "Seconds the engine's prefill calls took (wall time).", (m) => m.prefillSecondsTotal);
  metric('flash_mpt_decode_seconds_total', 'counter', "Seconds the engine's decode calls took (wall time).", (m) => m.decodeSecondsTotal);
  return `${lines.join('\n')}\n`;
}
