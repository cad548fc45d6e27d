/**
 * Memory pressure on a CUDA device: a KV budget larger than the card is E_OUT_OF_MEMORY before anything is
 * allocated, the message naming weights, KV cache and workspace and the device's free and total memory; the
 * process stays usable and a model that fits loads and generates after it.
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
    expect(message).toContain(`${gib(kvBytes)} of KV cache (1024 sequences × 65536 tokens × 24 layers × 2 (K, V) × d_model 2048 × 2 bytes)`);
    expect(message).toMatch(/ \d+\.\d\d GiB of workspace = \d+\.\d\d GiB, but cuda:0 has \d+\.\d\d GiB free of /);
    expect(message).toContain(` free of ${gib(totalBytes)}; lower maxContext or maxSequences (about `);
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
});
