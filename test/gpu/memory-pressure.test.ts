/**
 * Memory pressure on a CUDA device: weights or a KV budget larger than the card are E_OUT_OF_MEMORY before anything is
 * allocated, the message naming weights, KV cache and workspace and the device's free and total memory; the
 * process stays usable and a model that fits loads and generates after it. The float32 mode's figures (4-byte
 * weights and KV) go through the same check.
 */
import { createRandomModel, FlashMptError, parseConfig } from '../../lib';
import { SEED_MODEL_SHAPE } from '../../lib/bench/engine';
import { deviceInfo } from '../../lib/devices';
import { describeGpu } from './gpu';

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

describeGpu('memory pressure on cuda:0', () => {
  const config = parseConfig(SEED_MODEL_SHAPE, 'embedded 1B shape');

  test('a KV budget larger than the card is E_OUT_OF_MEMORY naming the numbers; a model that fits loads after it', async () => {
    const maxSequences = 1024;
    const maxContext = 65536;
    const kvBytes = maxSequences * maxContext * config.nLayers * 2 * config.dModel * 2; // bf16
    const { totalBytes } = deviceInfo(0);
    expect(kvBytes).toBeGreaterThan(totalBytes);

    const error = await createRandomModel(config, { device: 'cuda:0', maxSequences, maxContext }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(FlashMptError);
    const { code, message } = error as FlashMptError;
    expect(code).toBe('E_OUT_OF_MEMORY');
    // The default pool: every sequence at full context, in blocks of 64 tokens.
    expect(message).toContain(`${gib(kvBytes)} of KV cache (${(1024 * 65536) / 64} blocks × 64 tokens × 24 layers × 2 (K, V) × d_model 2048 × 2 bytes)`);
    expect(message).toMatch(/ \d+\.\d\d GiB of workspace = \d+\.\d\d GiB, but cuda:0 has \d+\.\d\d GiB free of /);
    expect(message).toMatch(new RegExp(` free of ${gib(totalBytes)}; lower kvCacheTokens to about \\d+ \\(its default is maxSequences × maxContext\\)`));
    expect(message).toContain('or load the model on a GPU with more free memory');

    const model = await createRandomModel(config, { device: 'cuda:0', maxSequences: 2, maxContext: 256 });
    try {
      expect(message).toContain(`cuda:0 cannot hold this model: it needs ${gib(model.memory().weightBytes)} of weights (bf16)`);
      const result = await model.generate({ ids: [1, 2, 3] }, { maxTokens: 8, temperature: 0, ignoreEos: true });
      expect(result.tokenIds).toHaveLength(8);
    } finally {
      await model.dispose();
    }
  }, 300_000);

  test('weights larger than the card are E_OUT_OF_MEMORY saying the weights alone do not fit; the process stays usable', async () => {
    // 128 layers of d_model 8192: ~207 GB of bf16 weights, more than any single GPU holds.
    const huge = parseConfig({ ...SEED_MODEL_SHAPE, d_model: 8192, n_heads: 64, n_layers: 128 }, 'huge test shape');
    const weightBytes = (12 * huge.dModel * huge.dModel * huge.nLayers + huge.vocabSize * huge.dModel) * 2;
    expect(weightBytes).toBeGreaterThan(deviceInfo(0).totalBytes);

    const error = await createRandomModel(huge, { device: 'cuda:0', maxSequences: 1, maxContext: 128 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(FlashMptError);
    expect((error as FlashMptError).code).toBe('E_OUT_OF_MEMORY');
    const stated = /cuda:0 cannot hold this model: it needs (\d+\.\d\d) GiB of weights \(bf16\)/.exec((error as FlashMptError).message);
    expect(stated).not.toBeNull();
    // The matrices counted here; the engine's figure adds the (fp32) LayerNorm weights, well under 1%.
    expect(Number(stated![1]) / (weightBytes / 2 ** 30)).toBeCloseTo(1, 2);
    expect((error as FlashMptError).message).toContain('the weights and workspace alone do not fit: load the model on a GPU with more free memory');

    const model = await createRandomModel(config, { device: 'cuda:0', maxSequences: 1, maxContext: 128 });
    try {
      expect((await model.generate({ ids: [5, 6] }, { maxTokens: 4, temperature: 0, ignoreEos: true })).tokenIds).toHaveLength(4);
    } finally {
      await model.dispose();
    }
  }, 300_000);

  test('float32 mode: twice the bytes of weights and KV cache, and the same check names them', async () => {
    const error = await createRandomModel(config, { device: 'cuda:0', dtype: 'f32', maxSequences: 1024, maxContext: 65536 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((error as FlashMptError).code).toBe('E_OUT_OF_MEMORY');
    expect((error as FlashMptError).message).toContain(`(${(1024 * 65536) / 64} blocks × 64 tokens × 24 layers × 2 (K, V) × d_model 2048 × 4 bytes)`);
    const half = await createRandomModel(config, { device: 'cuda:0', maxContext: 64 });
    const full = await createRandomModel(config, { device: 'cuda:0', dtype: 'f32', maxContext: 64 });
    try {
      expect((error as FlashMptError).message).toContain(`it needs ${gib(full.memory().weightBytes)} of weights (f32)`);
      expect(full.memory().kvCacheBytes).toBe(2 * half.memory().kvCacheBytes);
      // Matrices double; the fp32 LayerNorm weights do not.
      expect(full.memory().weightBytes / half.memory().weightBytes).toBeGreaterThan(1.99);
      expect(full.memory().weightBytes).toBeLessThan(2 * half.memory().weightBytes);
      const result = await full.generate({ ids: [1, 2, 3] }, { maxTokens: 4, temperature: 0, ignoreEos: true });
      expect(result.tokenIds).toHaveLength(4);
    } finally {
      await half.dispose();
      await full.dispose();
    }
  }, 300_000);
});
