'use strict';
/*
 * Run by test/lifecycle.test.ts (CPU) and test/gpu/lifecycle-cuda.test.ts as
 * `node --expose-gc lifecycle-child.js SCENARIO [DEVICE]` against the compiled package (dist/), so that global.gc()
 * makes memory readings comparable. DEVICE is 'cpu' (default) or 'cuda:N'; on a GPU each reading also holds the
 * device's free memory. Prints one JSON object of measurements.
 *   repeat   1,000 short generations and 200 aborted streams on a tiny model: memory after a warm-up and after each
 *   dispose  a larger model: memory before loading, loaded, and after dispose(); every call after it
 *   drop     models dropped without dispose() and collected: the process goes on, frees them, and exits 0
 */
const path = require('node:path');
const dist = path.join(__dirname, '..', '..', 'dist');
const { createRandomModel, parseConfig, FlashMptError } = require(dist);
const { deviceInfo } = require(path.join(dist, 'devices'));

const MiB = 2 ** 20;
const device = process.argv[3] ?? 'cpu';
const gpuOrdinal = device.startsWith('cuda:') ? Number(device.slice('cuda:'.length)) : undefined;

/** After a full collection, and a pause for the engine's off-thread frees. */
async function settledMemory(model) {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    global.gc();
  }
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
  const engine = model ? model.memory() : undefined;
  const gpuFreeMiB = gpuOrdinal === undefined ? undefined : deviceInfo(gpuOrdinal).freeBytes / MiB;
  return { rssMiB: rss / MiB, heapUsedMiB: heapUsed / MiB, externalMiB: external / MiB, arrayBuffersMiB: arrayBuffers / MiB, gpuFreeMiB, engine };
}

function tinyConfig(dModel, nLayers, vocabSize) {
  return parseConfig({ model_type: 'mpt', d_model: dModel, n_heads: 4, n_layers: nLayers, vocab_size: vocabSize, max_seq_len: 64, expansion_ratio: 4, no_bias: true, attn_config: { alibi: true, qk_ln: true } });
}

const prompt = (i) => ({ ids: [1 + (i % 50), 2 + (i % 7), 3 + (i % 11)] });

async function generations(model, count, offset) {
  const finishes = {};
  for (let i = 0; i < count; i++) {
    const res = await model.generate(prompt(offset + i), { maxTokens: 8, temperature: 0.8, seed: offset + i, ignoreEos: true });
    finishes[res.finishReason] = (finishes[res.finishReason] ?? 0) + 1;
  }
  return finishes;
}

/** Streams aborted through their AbortSignal after `afterChunks` chunks (0: before the first one arrives). */
async function abortedStreams(model, count) {
  const finishes = {};
  for (let i = 0; i < count; i++) {
    const controller = new AbortController();
    const afterChunks = i % 4;
    if (afterChunks === 0) setImmediate(() => controller.abort());
    const stream = model.stream(prompt(i), { maxTokens: 48, temperature: 0.8, seed: i, ignoreEos: true, signal: controller.signal });
    let chunks = 0;
    let finish = 'unknown';
    try {
      for (;;) {
        const step = await stream.next();
        if (step.done) {
          finish = step.value.finishReason;
          break;
        }
        if (++chunks === afterChunks) controller.abort();
      }
    } catch (err) {
      if (!(err instanceof FlashMptError)) throw err;
      finish = err.code;
    }
    finishes[finish] = (finishes[finish] ?? 0) + 1;
  }
  return finishes;
}

async function repeat() {
  // A vocabulary of 4096 makes a logits row 16 KiB, so a row kept per step or per call would show.
  const model = await createRandomModel(tinyConfig(64, 2, 4096), { device, threads: 1, seed: 3 });
  // Warm-up: the JIT, the allocator's arenas and the scheduler's buffers reach their steady size first.
  await generations(model, 200, 1_000_000);
  await abortedStreams(model, 200);
  const warm = await settledMemory(model);
  const generationFinishes = await generations(model, 1000, 0);
  const afterGenerations = await settledMemory(model);
  const streamFinishes = await abortedStreams(model, 200);
  const afterStreams = await settledMemory(model);
  const scheduler = model.schedulerMetrics();
  await model.dispose();
  return { warm, afterGenerations, afterStreams, generationFinishes, streamFinishes, scheduler: { queueLength: scheduler.queueLength, runningSequences: scheduler.runningSequences, kvBlocksInUse: scheduler.kvBlocksInUse } };
}

async function typedErrorOf(call) {
  try {
    await call();
  } catch (err) {
    return err instanceof FlashMptError ? err.code : `untyped: ${err}`;
  }
  return 'no error';
}

/** Loads the kernels' modules and the allocator's first pools, which stay for the process, before a baseline. */
async function warmUp() {
  const model = await createRandomModel(tinyConfig(64, 1, 128), { device, threads: 1 });
  await model.generate(prompt(0), { maxTokens: 4 });
  await model.dispose();
}

async function dispose() {
  await warmUp();
  const before = await settledMemory();
  const model = await createRandomModel(tinyConfig(512, 6, 8192), { device, threads: 1, maxContext: 64 });
  await model.generate(prompt(0), { maxTokens: 4 });
  const loaded = await settledMemory(model);
  await model.dispose();
  const disposed = await settledMemory();
  const afterDispose = {
    memory: await typedErrorOf(() => model.memory()),
    generate: await typedErrorOf(() => model.generate(prompt(0), { maxTokens: 2 })),
    stream: await typedErrorOf(() => model.stream(prompt(0), { maxTokens: 2 }).next()),
    logits: await typedErrorOf(() => model.logits([1, 2])),
    disposeAgain: await typedErrorOf(() => model.dispose()),
  };
  // `await using` disposes through Symbol.asyncDispose
  const scoped = await createRandomModel(tinyConfig(64, 1, 128), { device, threads: 1 });
  await scoped[Symbol.asyncDispose]();
  return { before, loaded, disposed, afterDispose, asyncDispose: await typedErrorOf(() => scoped.memory()) };
}

/** Models of ~90 MiB of weights each, dropped without dispose(), half of them mid-stream with a sequence still open. */
async function loadAndDrop(count, collected) {
  let weightMiB = 0;
  for (let i = 0; i < count; i++) {
    const model = await createRandomModel(tinyConfig(512, 6, 8192), { device, threads: 1, seed: i, maxContext: 64 });
    weightMiB = model.memory().weightBytes / MiB;
    collected.register(model);
    if (i % 2 === 0) await model.generate(prompt(i), { maxTokens: 4 });
    else await model.stream(prompt(i), { maxTokens: 16 }).next();
  }
  return weightMiB;
}

async function drop() {
  await warmUp();
  const before = await settledMemory();
  let collectedCount = 0;
  const collected = new FinalizationRegistry(() => collectedCount++);
  // In a function of its own: its frame, which could hold the last model, is gone by the time gc() runs.
  const weightMiB = await loadAndDrop(4, collected);
  // An engine collected mid-call is freed off the JS thread when that call lands, which on a loaded machine can take
  // longer than one settle: wait until less than half of one model's weights is left (device memory on a GPU, else
  // host memory), or 10 s.
  const left = (r) => (gpuOrdinal === undefined ? r.rssMiB - before.rssMiB : before.gpuFreeMiB - r.gpuFreeMiB);
  let afterDrops = await settledMemory();
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; afterDrops = await settledMemory()) {
    if (collectedCount === 4 && left(afterDrops) < weightMiB / 2) break;
  }
  return { dropped: 4, collected: collectedCount, before, afterDrops, weightMiB };
}

const scenarios = { repeat, dispose, drop };
scenarios[process.argv[2]]().then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err) => {
    process.stderr.write(`${err && err.stack}\n`);
    process.exitCode = 1;
  },
);
