'use strict';
/*
 * What the JS layer (scheduler, sampler, streams) adds to a decode step at high concurrency, on the CPU engine with
 * a one-layer d64 model so that the engine's own step is small:
 *   node bench/scheduler-overhead.js [CONCURRENCY=64] [VOCAB=1024]   (after `npm run build:ts`)
 * prints the mean of 128 native decodeBatchCandidates steps, the mean step of CONCURRENCY greedy
 * model.stream() calls (after one warm-up round), and their difference per step and per token.
 */
const { createRandomModel, parseConfig } = require('../dist');

const concurrency = Number(process.argv[2] || 64);
const vocab = Number(process.argv[3] || 1024);
const steps = 128;

async function main() {
  const config = parseConfig({ model_type: 'mpt', d_model: 64, n_heads: 4, n_layers: 1, vocab_size: vocab, max_seq_len: 512, expansion_ratio: 4, no_bias: true, attn_config: { alibi: true, qk_ln: true } });
  const model = await createRandomModel(config, { device: 'cpu', maxSequences: concurrency, maxContext: 300, threads: 2 });
  const engine = model.live();
  const seqs = Int32Array.from({ length: concurrency }, () => engine.createSequence());
  for (const s of seqs) await engine.forward(s, Int32Array.of(1, 2, 3, 4), false);
  const ids = Int32Array.from({ length: concurrency }, (_, i) => i + 5);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await engine.decodeBatchCandidates(seqs, ids, 64, vocab);
  const nativeMs = (performance.now() - t0) / steps;
  for (const s of seqs) engine.releaseSequence(s);

  const round = async () => {
    const t = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_, s) => {
        for await (const chunk of model.stream({ ids: [1 + s, 2, 3, 4] }, { maxTokens: steps, temperature: 0, ignoreEos: true })) void chunk;
      }),
    );
    return (performance.now() - t) / steps;
  };
  await round();
  const apiMs = await round();
  const overhead = apiMs - nativeMs;
  console.log(
    `concurrency ${concurrency}, vocab ${vocab}: native step ${nativeMs.toFixed(3)} ms, stream() step ${apiMs.toFixed(3)} ms, ` +
      `JS layer ${overhead.toFixed(3)} ms per step = ${((overhead * 1000) / concurrency).toFixed(1)} µs per token`,
  );
  await model.dispose();
}

main();
