/**
 * `flash-mpt bench`: throughput of the engine on a random-weight model made in memory (the real 1B shape on a
 * GPU, a small shape on CPU) or on a real checkpoint (--model DIR). Figures are stated against ceilings
 * measured in the same run where the backend has them (DESIGN.md §5).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig, MptConfig } from '../config';
import { createRandomModel, loadModel, Model } from '../model';
import { loadNative } from '../native';

export interface EngineBenchOptions {
  modelDir?: string;
  device: string;
  dtype: 'bf16' | 'f16';
  prefillLengths?: number[];
  decodeTokens?: number;
  promptTokens?: number;
}

export interface EngineBenchResult {
  device: string;
  /** GPU only: ceilings measured in the same run. */
  ceilings?: { copyGBs: number; gemmTflops: number };
  /** GPU only: decode floor = weight bytes ÷ copy bandwidth, and the measured time over it. */
  decodeFloor?: { msPerToken: number; ratio: number; fractionOfBandwidth: number };
  attention?: Array<{ seqLen: number; batch: number; ms: number; tflops: number }>;
  model: string;
  /** Time to a usable model: parse, read/convert/upload the weights (or generate them on the device). */
  load: { ms: number; gbPerSecond?: number };
  params: number;
  weightBytes: number;
  /** mfu: achieved FLOP rate over flash-mpt's own 8192³ GEMM rate measured in the same run (GPU only; no cuBLAS here, so
   *  state MFU against a vendor GEMM from bench/peers.py of the same session). */
  prefill: Array<{ tokens: number; ms: number; tokensPerSecond: number; tflops: number; mfu?: number }>;
  /** msPerToken: greedy steps chained on the device (decodeGreedy); msPerTokenPerCall: one engine call per token. */
  decode: { promptTokens: number; newTokens: number; msPerToken: number; tokensPerSecond: number; msPerTokenPerCall: number };
  streamApi: { tokensPerSecond: number; ratioToNativeLoop: number };
}

/** MosaicML-1B-RedPajama-Llama's shape in the `mpt` layout. */
export const SEED_MODEL_SHAPE = {
  model_type: 'mpt', d_model: 2048, n_heads: 16, n_layers: 24, expansion_ratio: 4, max_seq_len: 2048, vocab_size: 50432,
  no_bias: true, attn_config: { alibi: true, alibi_bias_max: 8, qk_ln: true, clip_qkv: null, softmax_scale: null },
};
/** A small shape that a 2-core CPU runs in seconds, same vocabulary as the seed model. */
export const CPU_BENCH_SHAPE = { ...SEED_MODEL_SHAPE, d_model: 256, n_heads: 4, n_layers: 4, max_seq_len: 512 };

export function paramCount(c: MptConfig): number {
  const perLayer = 3 * c.dModel * c.dModel + c.dModel * c.dModel + 2 * c.dModel * c.dFf + 2 * c.dModel + (c.qkLn ? 2 * c.dModel : 0);
  return c.vocabSize * c.dModel + c.nLayers * perLayer + c.dModel;
}

/** Forward FLOPs of `tokens` prompt tokens: 2 per weight per token (LM head on the last token only) + causal attention. */
function prefillFlops(c: MptConfig, tokens: number): number {
  const body = 2 * (paramCount(c) - c.vocabSize * c.dModel) * tokens + 2 * c.vocabSize * c.dModel;
  const attention = c.nLayers * 4 * c.nHeads * tokens * tokens * c.headDim * 0.5;
  return body + attention;
}

/** Bytes of the weight files in a model folder (what loading reads). */
function checkpointBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => /\.(safetensors|bin)$/.test(f))
    .reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timePrefill(model: Model, tokens: number, repeats: number): Promise<number> {
  const engine = model.live();
  const ids = Int32Array.from({ length: tokens }, (_, i) => (i * 7919 + 13) % model.config.vocabSize);
  const times: number[] = [];
  for (let r = 0; r < repeats + 1; r++) {
    const seq = engine.createSequence();
    const t0 = performance.now();
    await engine.forward(seq, ids, false);
    const dt = performance.now() - t0;
    engine.releaseSequence(seq);
    if (r > 0) times.push(dt); // the first run warms up (allocations, graph capture)
  }
  return median(times);
}

/** Untimed decode steps before each timed run: a graph bucket's first step runs eagerly, its second captures it. */
const WARMUP_STEPS = 2;

/**
 * ms per token of batch-1 greedy decoding after a prompt, two ways: `chained`, one decodeGreedy call for all the
 * tokens (each pick, made on the GPU, feeds the next step: no round trip to JS between steps), and `perCall`, one
 * engine call per token (the logits come back to JS every step).
 */
async function timeNativeDecode(model: Model, promptTokens: number, newTokens: number): Promise<{ chained: number; perCall: number }> {
  const engine = model.live();
  const prompt = Int32Array.from({ length: promptTokens }, (_, i) => i + 1);
  const token = Int32Array.of(42);
  const vocab = model.config.vocabSize;
  const afterPrompt = async (warmUp: (seq: number) => Promise<unknown>, run: (seq: number) => Promise<unknown>) => {
    const seq = engine.createSequence();
    try {
      await engine.forward(seq, prompt, false);
      await warmUp(seq);
      const t0 = performance.now();
      await run(seq);
      return (performance.now() - t0) / newTokens;
    } finally {
      engine.releaseSequence(seq);
    }
  };
  const chain = (steps: number) => (seq: number) => engine.decodeGreedy(Int32Array.of(seq), token, steps, vocab, -1);
  const calls = (steps: number) => async (seq: number) => {
    for (let i = 0; i < steps; i++) await engine.forward(seq, token, false);
  };
  return {
    chained: await afterPrompt(chain(WARMUP_STEPS), chain(newTokens)),
    perCall: await afterPrompt(calls(WARMUP_STEPS), calls(newTokens)),
  };
}

async function timeStreamApi(model: Model, promptTokens: number, newTokens: number): Promise<number> {
  const stream = model.stream({ ids: Array.from({ length: promptTokens }, (_, i) => i + 1) }, { maxTokens: newTokens + 1, temperature: 0, ignoreEos: true });
  let first = 0;
  let count = 0;
  for await (const chunk of stream) {
    if (chunk.tokenId === null) continue;
    if (count++ === 0) first = performance.now(); // from the first token on: decode only, prompt excluded
  }
  return ((count - 1) * 1000) / (performance.now() - first);
}

export async function runEngineBench(opts: EngineBenchOptions): Promise<EngineBenchResult> {
  const gpu = opts.device !== 'cpu' && (opts.device !== 'auto' || loadNative().deviceCount() > 0);
  const promptTokens = opts.promptTokens ?? 32;
  const decodeTokens = opts.decodeTokens ?? (gpu ? 128 : 16);
  const config = opts.modelDir ? undefined : parseConfig(gpu ? SEED_MODEL_SHAPE : CPU_BENCH_SHAPE, gpu ? 'embedded 1B shape' : 'embedded CPU shape');
  const lengths = opts.prefillLengths ?? (gpu ? [128, 512, 2048] : [32, 128]);
  const maxContext = Math.max(...lengths, promptTokens + decodeTokens + WARMUP_STEPS);
  const loadStart = performance.now();
  const model = opts.modelDir
    ? await loadModel(opts.modelDir, { device: opts.device as 'auto', dtype: opts.dtype, maxContext })
    : await createRandomModel(config!, { device: opts.device as 'auto', dtype: opts.dtype, maxContext });
  const loadMs = performance.now() - loadStart;
  const fileBytes = opts.modelDir ? checkpointBytes(opts.modelDir) : undefined;
  try {
    const c = model.config;
    const prefill: EngineBenchResult['prefill'] = [];
    for (const tokens of lengths) {
      const ms = await timePrefill(model, tokens, gpu ? 5 : 1);
      prefill.push({ tokens, ms, tokensPerSecond: (tokens * 1000) / ms, tflops: prefillFlops(c, tokens) / (ms * 1e9) });
    }
    const decodeMs = await timeNativeDecode(model, promptTokens, decodeTokens);
    const msPerToken = decodeMs.chained;
    const streamTps = await timeStreamApi(model, promptTokens, decodeTokens);
    const weightBytes = model.memory().weightBytes;
    let gpuFigures: Pick<EngineBenchResult, 'ceilings' | 'decodeFloor' | 'attention'> = {};
    if (model.device.startsWith('cuda')) {
      const ordinal = Number(model.device.slice('cuda:'.length));
      const ceilings = await loadNative().measureCeilings(ordinal);
      for (const p of prefill) p.mfu = p.tflops / ceilings.gemmTflops;
      const floorMs = weightBytes / (ceilings.copyGBs * 1e6);
      gpuFigures = {
        ceilings,
        decodeFloor: { msPerToken: floorMs, ratio: msPerToken / floorMs, fractionOfBandwidth: floorMs / msPerToken },
        attention: await loadNative().measureAttention(ordinal, [512, 2048, 8192], 16384, 16),
      };
    }
    return {
      device: model.device,
      ...gpuFigures,
      model: opts.modelDir ?? `random ${c.nLayers}L d${c.dModel} h${c.nHeads} vocab ${c.vocabSize}`,
      load: { ms: loadMs, gbPerSecond: fileBytes === undefined ? undefined : fileBytes / (loadMs * 1e6) },
      params: paramCount(c),
      weightBytes,
      prefill,
      decode: { promptTokens, newTokens: decodeTokens, msPerToken, tokensPerSecond: 1000 / msPerToken, msPerTokenPerCall: decodeMs.perCall },
      streamApi: { tokensPerSecond: streamTps, ratioToNativeLoop: streamTps / (1000 / msPerToken) },
    };
  } finally {
    await model.dispose();
  }
}

export function formatEngineBench(r: EngineBenchResult): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `flash-mpt bench — ${r.model} (${(r.params / 1e6).toFixed(1)} M params, ${(r.weightBytes / 1e9).toFixed(2)} GB of weights) on ${r.device}`,
  ];
  lines.push(`load: ${r.load.ms.toFixed(0)} ms${r.load.gbPerSecond === undefined ? ' (random weights generated by the engine, no file)' : `, ${r.load.gbPerSecond.toFixed(2)} GB/s of checkpoint files`}`);
  if (r.ceilings) {
    lines.push(`ceilings (same run): device copy ${r.ceilings.copyGBs.toFixed(0)} GB/s, flash-mpt bf16 GEMM 8192³ ${r.ceilings.gemmTflops.toFixed(0)} TFLOP/s`);
  }
  lines.push(
    '',
    '| prefill tokens | ms | tokens/s | TFLOP/s | of own GEMM rate |',
    '| ---: | ---: | ---: | ---: | ---: |',
    ...r.prefill.map((p) => `| ${p.tokens} | ${p.ms.toFixed(2)} | ${p.tokensPerSecond.toFixed(0)} | ${p.tflops.toFixed(3)} | ${p.mfu === undefined ? '–' : pct(p.mfu)} |`),
    '',
    `decode (batch 1, prompt ${r.decode.promptTokens}, ${r.decode.newTokens} new tokens, greedy picks chained on the device): ${r.decode.msPerToken.toFixed(3)} ms/token, ${r.decode.tokensPerSecond.toFixed(1)} tokens/s`,
  );
  if (r.decodeFloor) {
    lines.push(`  bandwidth floor ${r.decodeFloor.msPerToken.toFixed(3)} ms/token: ${r.decodeFloor.ratio.toFixed(2)}x the floor, ${pct(r.decodeFloor.fractionOfBandwidth)} of copy bandwidth`);
  }
  lines.push(`  one engine call per token (logits back to JS each step): ${r.decode.msPerTokenPerCall.toFixed(3)} ms/token`);
  lines.push(`stream() API: ${r.streamApi.tokensPerSecond.toFixed(1)} tokens/s = ${pct(r.streamApi.ratioToNativeLoop)} of the native decode loop`);
  if (r.attention) {
    lines.push('', '| attention (bf16, causal, ALiBi, 16 × 128) | batch | ms | TFLOP/s |', '| ---: | ---: | ---: | ---: |');
    for (const a of r.attention) lines.push(`| S = ${a.seqLen} | ${a.batch} | ${a.ms.toFixed(3)} | ${a.tflops.toFixed(1)} |`);
  }
  return lines.join('\n');
}
