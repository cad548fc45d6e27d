/**
 * `flash-mpt bench serving`: throughput of concurrent generations through the public API (scheduler, continuous
 * batching, sampling) at several concurrencies, beside the bandwidth model of a decode step (DESIGN.md §5):
 * every step reads all weights once plus each running sequence's KV cache, so at batch B a step cannot take less
 * than (weights + B × KV bytes at the mean context) ÷ copy bandwidth, measured in the same run.
 */
import { parseConfig } from '../config';
import { createRandomModel, loadModel, Model } from '../model';
import { loadNative } from '../native';
import { CPU_BENCH_SHAPE, SEED_MODEL_SHAPE } from './engine';

export interface ServingBenchOptions {
  modelDir?: string;
  device: string;
  dtype: 'bf16' | 'f16';
  concurrencies?: number[];
  promptTokens?: number;
  newTokens?: number;
  temperature?: number;
}

export interface ServingBenchRow {
  concurrency: number;
  /** Wall time from the first request to the last token, prefill included. */
  seconds: number;
  /** All generated tokens over that time. */
  outputTokensPerSecond: number;
  /** Tokens per second while every sequence of the round was decoding (after the last prefill, before the first finish). */
  decodeTokensPerSecond: number;
  /** GPU only: the bandwidth model's tokens/s for this batch and the measured decode rate over it. */
  modelTokensPerSecond?: number;
  ratioToModel?: number;
  /** Tokens sampled from the engine's top-K candidates, from a fetched full row, and picked on the device (greedy chains). */
  sampledFromCandidates: number;
  sampledFromFullRow: number;
  pickedOnDevice: number;
  /** Of `seconds`: the engine's prefill calls and its decode calls (wall time; the rest is the host between them). */
  prefillSeconds: number;
  decodeSeconds: number;
  /** Time to first token (every request starts at once): the median and the slowest stream's, ms. */
  firstTokenMs: { median: number; max: number };
}

export interface ServingBenchResult {
  device: string;
  model: string;
  promptTokens: number;
  newTokens: number;
  temperature: number;
  copyGBs?: number;
  weightBytes: number;
  /** K and V bytes of one token over all layers. */
  kvBytesPerToken: number;
  rows: ServingBenchRow[];
}

/** Token timestamps of one stream, its first after the prompt's prefill. */
async function timedStream(model: Model, ids: number[], newTokens: number, temperature: number, seed: number): Promise<number[]> {
  const times: number[] = [];
  for await (const chunk of model.stream({ ids }, { maxTokens: newTokens, temperature, seed, ignoreEos: true })) {
    if (chunk.tokenId !== null) times.push(performance.now());
  }
  return times;
}

async function round(model: Model, concurrency: number, promptTokens: number, newTokens: number, temperature: number): Promise<Omit<ServingBenchRow, 'modelTokensPerSecond' | 'ratioToModel'>> {
  const vocab = model.config.vocabSize;
  const before = model.schedulerMetrics();
  const t0 = performance.now();
  const streams = await Promise.all(
    Array.from({ length: concurrency }, (_, s) =>
      timedStream(model, Array.from({ length: promptTokens }, (_, i) => (s * 7919 + i * 104729 + 1) % vocab), newTokens, temperature, s),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = model.schedulerMetrics();
  const allDecoding = Math.max(...streams.map((t) => t[0]));
  const firstFinish = Math.min(...streams.map((t) => t[t.length - 1]));
  const inWindow = streams.reduce((n, t) => n + t.filter((x) => x > allDecoding && x <= firstFinish).length, 0);
  const total = streams.reduce((n, t) => n + t.length, 0);
  const firstTokens = streams.map((t) => t[0] - t0).sort((a, b) => a - b);
  return {
    concurrency,
    seconds,
    outputTokensPerSecond: total / seconds,
    decodeTokensPerSecond: firstFinish > allDecoding ? (inWindow * 1000) / (firstFinish - allDecoding) : NaN,
    sampledFromCandidates: after.sampledFromCandidatesTotal - before.sampledFromCandidatesTotal,
    sampledFromFullRow: after.sampledFromFullRowTotal - before.sampledFromFullRowTotal,
    pickedOnDevice: after.pickedOnDeviceTotal - before.pickedOnDeviceTotal,
    prefillSeconds: after.prefillSecondsTotal - before.prefillSecondsTotal,
    decodeSeconds: after.decodeSecondsTotal - before.decodeSecondsTotal,
    firstTokenMs: { median: firstTokens[Math.floor((firstTokens.length - 1) / 2)], max: firstTokens[firstTokens.length - 1] },
  };
}

export async function runServingBench(opts: ServingBenchOptions): Promise<ServingBenchResult> {
  const gpu = opts.device !== 'cpu' && (opts.device !== 'auto' || loadNative().deviceCount() > 0);
  const concurrencies = opts.concurrencies ?? (gpu ? [1, 8, 32, 64] : [1, 4]);
  const promptTokens = opts.promptTokens ?? (gpu ? 128 : 16);
  const newTokens = opts.newTokens ?? (gpu ? 128 : 8);
  const temperature = opts.temperature ?? 0;
  const loadOptions = { device: opts.device as 'auto', dtype: opts.dtype, maxContext: promptTokens + newTokens, maxSequences: Math.max(...concurrencies) };
  const model = opts.modelDir
    ? await loadModel(opts.modelDir, loadOptions)
    : await createRandomModel(parseConfig(gpu ? SEED_MODEL_SHAPE : CPU_BENCH_SHAPE, gpu ? 'embedded 1B shape' : 'embedded CPU shape'), loadOptions);
  try {
    const c = model.config;
    const weightBytes = model.memory().weightBytes;
    const kvBytesPerToken = 2 * c.nLayers * c.dModel * (model.device === 'cpu' ? 4 : 2);
    const copyGBs = model.device.startsWith('cuda') ? (await loadNative().measureCeilings(Number(model.device.slice('cuda:'.length)))).copyGBs : undefined;
    await round(model, Math.max(...concurrencies), promptTokens, 4, temperature); // warm-up: graphs of every batch bucket
    const rows: ServingBenchRow[] = [];
    for (const concurrency of concurrencies) {
      const row: ServingBenchRow = await round(model, concurrency, promptTokens, newTokens, temperature);
      if (copyGBs !== undefined) {
        const stepBytes = weightBytes + concurrency * kvBytesPerToken * (promptTokens + newTokens / 2);
        row.modelTokensPerSecond = (concurrency * copyGBs * 1e9) / stepBytes;
        row.ratioToModel = row.decodeTokensPerSecond / row.modelTokensPerSecond;
      }
      rows.push(row);
    }
    return {
      device: model.device,
      model: opts.modelDir ?? `random ${c.nLayers}L d${c.dModel} h${c.nHeads} vocab ${c.vocabSize}`,
      promptTokens,
      newTokens,
      temperature,
      copyGBs,
      weightBytes,
      kvBytesPerToken,
      rows,
    };
  } finally {
    await model.dispose();
  }
}

export function formatServingBench(r: ServingBenchResult): string {
  const ms = (seconds: number) => (seconds * 1000).toFixed(0);
  const lines = [
    `flash-mpt bench serving — ${r.model} on ${r.device}: prompt ${r.promptTokens} tokens, ${r.newTokens} new tokens each, temperature ${r.temperature}`,
    r.copyGBs === undefined
      ? 'bandwidth model: GPU only'
      : `bandwidth model: (${(r.weightBytes / 1e9).toFixed(2)} GB of weights + batch × ${(r.kvBytesPerToken / 1e3).toFixed(0)} kB of KV per token of context) ÷ copy ${r.copyGBs.toFixed(0)} GB/s (same run)`,
    '',
    '| concurrency | output tok/s (prefill included) | decode tok/s (all decoding) | model tok/s | of model | sampled from candidates / full row / picked on device | ms: engine prefill / decode / rest | first token ms: median / max |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.rows.map(
      (x) =>
        `| ${x.concurrency} | ${x.outputTokensPerSecond.toFixed(0)} | ${x.decodeTokensPerSecond.toFixed(0)} | ${x.modelTokensPerSecond?.toFixed(0) ?? '–'} | ${x.ratioToModel === undefined ? '–' : `${(100 * x.ratioToModel).toFixed(1)}%`} | ${x.sampledFromCandidates} / ${x.sampledFromFullRow} / ${x.pickedOnDevice} | ${ms(x.prefillSeconds)} / ${ms(x.decodeSeconds)} / ${ms(x.seconds - x.prefillSeconds - x.decodeSeconds)} | ${x.firstTokenMs.median.toFixed(1)} / ${x.firstTokenMs.max.toFixed(1)} |`,
    ),
  ];
  return lines.join('\n');
}
