/**
 * The generation API on the CPU engine with the real GPT-NeoX tokenizer: seeds, stop strings across token
 * boundaries, abort, stream ≡ generate, context limits and option validation.
 */
import * as fs from 'node:fs';
import { FlashMptError, loadModel, Model } from '../lib';
import { describeWithData, sharedPath } from './helpers/data';
import { makeTempDir, modelTensors, safetensorsBytes, writeModelFolder } from './helpers/checkpoint-writers';
import { makeTextModelFolder, TEXT_MODEL } from './helpers/tiny-model';

async function collect(stream: AsyncGenerator<{ text: string; tokenId: number | null }, { text: string; finishReason: string }>) {
  const chunks: Array<{ text: string; tokenId: number | null }> = [];
  for (;;) {
    const step = await stream.next();
    if (step.done) return { chunks, result: step.value };
    chunks.push(step.value);
  }
}

describeWithData('generate and stream', 'data/gpt-neox-20b/tokenizer.json', () => {
  let dir: string;
  let model: Model;
  beforeAll(async () => {
    dir = await makeTextModelFolder();
    model = await loadModel(dir, { device: 'cpu', maxContext: 96 });
  });
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const prompt = 'Once upon a time, in a land far away,';

  test('the same seed gives the same tokens; another seed gives others', async () => {
    const opts = { maxTokens: 24, temperature: 1.2, topP: 0.95, seed: 7 };
    const a = await model.generate(prompt, opts);
    const b = await model.generate(prompt, opts);
    const c = await model.generate(prompt, { ...opts, seed: 8 });
    expect(a.tokenIds).toHaveLength(24);
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(b.text).toBe(a.text);
    expect(c.tokenIds).not.toEqual(a.tokenIds);
  });

  test('stream() yields exactly what generate() returns, chunk texts concatenating to the text', async () => {
    const opts = { maxTokens: 30, temperature: 0.9, topK: 40, seed: 3 };
    const whole = await model.generate(prompt, opts);
    const { chunks, result } = await collect(model.stream(prompt, opts));
    expect(chunks.map((c) => c.text).join('')).toBe(whole.text);
    expect(chunks.filter((c) => c.tokenId !== null).map((c) => c.tokenId)).toEqual(whole.tokenIds);
    expect(result.text).toBe(whole.text);
    expect(whole.text).toBe(model.tokenizer!.decode(whole.tokenIds));
    expect(whole.usage).toEqual({ promptTokens: model.tokenizer!.encode(prompt).length, completionTokens: 30 });
  });

  test('a stop string spanning token boundaries ends generation and is left out of the text', async () => {
    const free = await model.generate(prompt, { maxTokens: 30, temperature: 0 });
    const tok = model.tokenizer!;
    // A stop string that starts inside token 4's text and ends inside token 6's: it spans two boundaries.
    const start = tok.decode(free.tokenIds.slice(0, 4)).length - 1;
    const end = tok.decode(free.tokenIds.slice(0, 6)).length + 1;
    const stop = free.text.slice(start, end);
    expect(stop.length).toBeGreaterThan(2);
    const expectedText = free.text.slice(0, free.text.indexOf(stop));
    const stopped = await model.generate(prompt, { maxTokens: 30, temperature: 0, stop: ['never appears ☃', stop] });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.text).toBe(expectedText);
    const { chunks } = await collect(model.stream(prompt, { maxTokens: 30, temperature: 0, stop }));
    expect(chunks.map((c) => c.text).join('')).toBe(expectedText);
  });

  test('an AbortSignal ends the stream within one step and frees the sequence', async () => {
    const controller = new AbortController();
    const stream = model.stream(prompt, { maxTokens: 60, temperature: 0, signal: controller.signal });
    let tokens = 0;
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        expect(step.value.finishReason).toBe('abort');
        break;
      }
      if (++tokens === 3) controller.abort();
    }
    expect(tokens).toBeLessThanOrEqual(4);
    // The model has one sequence slot: a new request succeeds only if the aborted one released it.
    const after = await model.generate(prompt, { maxTokens: 2, temperature: 0 });
    expect(after.tokenIds).toHaveLength(2);
  });

  test('breaking out of for-await frees the sequence', async () => {
    let seen = 0;
    for await (const chunk of model.stream(prompt, { maxTokens: 50, temperature: 0 })) {
      if (chunk.tokenId !== null && ++seen === 2) break;
    }
    const after = await model.generate(prompt, { maxTokens: 2, temperature: 0 });
    expect(after.tokenIds).toHaveLength(2);
  });

  test('ids the tokenizer cannot produce are never sampled', async () => {
    const out = await model.generate({ ids: [1, 2, 3] }, { maxTokens: 80, temperature: 50, seed: 1, ignoreEos: true });
    expect(out.tokenIds).toHaveLength(80);
    expect(Math.max(...out.tokenIds)).toBeLessThan(model.tokenizer!.vocabSize);
  });

  test('a logit bias of +100 forces a token and eos ends generation unless ignored', async () => {
    const eos = model.tokenizer!.eosTokenId!;
    const forced = await model.generate(prompt, { maxTokens: 5, temperature: 0.7, seed: 2, logitBias: { 1000: 100 } });
    expect(forced.tokenIds).toEqual([1000, 1000, 1000, 1000, 1000]);
    const ended = await model.generate(prompt, { maxTokens: 5, temperature: 0, logitBias: { [eos]: 100 } });
    expect(ended.finishReason).toBe('eos');
    expect(ended.tokenIds).toEqual([]);
  });

  test('prompt + maxTokens past the context is a typed error, or truncated on the left when asked', async () => {
    const long = { ids: Array.from({ length: 90 }, (_, i) => 100 + i) };
    await expect(model.generate(long, { maxTokens: 10 })).rejects.toMatchObject({ code: 'E_CONTEXT_LENGTH' });
    const out = await model.generate(long, { maxTokens: 10, temperature: 0, truncate: 'left' });
    expect(out.usage.promptTokens).toBe(86);
    expect(out.tokenIds).toHaveLength(10);
  });

  test('invalid options give one typed error listing every bad field', async () => {
    let error: unknown;
    try {
      await model.generate(prompt, { maxTokens: -1, temperature: -2, topP: 7 } as never);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FlashMptError);
    expect((error as FlashMptError).code).toBe('E_INVALID_ARGUMENT');
    for (const field of ['maxTokens', 'temperature', 'topP']) expect((error as Error).message).toContain(field);
  });

  test('out-of-range prompt ids are a typed error', async () => {
    await expect(model.generate({ ids: [1, 60000] })).rejects.toMatchObject({ code: 'E_TOKEN_RANGE' });
  });
});

describeWithData('text prompts need a tokenizer', 'golden/tiny-mosaic-fp32', () => {
  test('a model folder without tokenizer.json rejects text prompts with E_TOKENIZER', async () => {
    const model = await loadModel(sharedPath('golden', 'tiny-mosaic-fp32'), { device: 'cpu' });
    try {
      await expect(model.generate('hello')).rejects.toMatchObject({ code: 'E_TOKENIZER' });
    } finally {
      await model.dispose();
    }
  });

  test('calls after dispose() are typed errors', async () => {
    const model = await loadModel(sharedPath('golden', 'tiny-mosaic-fp32'), { device: 'cpu' });
    await model.dispose();
    await expect(model.logits([1, 2])).rejects.toMatchObject({ code: 'E_DISPOSED' });
    await expect(model.generate({ ids: [1] })).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });
});

describeWithData('load progress', 'golden/tiny-mosaic-bin', () => {
  test('onProgress hears a monotone sequence of byte counts that ends at the checkpoint size, before loadModel resolves', async () => {
    // 64 MB of fp32 weights: the native loader reports every 4 MB chunk while it reads.
    const shape = { ...TEXT_MODEL, dModel: 256, nLayers: 4 };
    const dir = await makeTempDir('flash-mpt-progress-');
    await writeModelFolder(dir, shape, 'mpt', { file: 'model.safetensors', bytes: safetensorsBytes(modelTensors(shape, 'mpt', 'F32')) });
    const reports: Array<{ loadedBytes: number; totalBytes: number }> = [];
    const model = await loadModel(dir, { device: 'cpu', onProgress: (p) => reports.push(p) });
    const settledCount = reports.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    await model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
    expect(reports.length).toBe(settledCount); // nothing trails the promise
    expect(reports.length).toBeGreaterThan(2);
    const total = reports[0].totalBytes;
    expect(total).toBeGreaterThan(0);
    expect(reports.every((r) => r.totalBytes === total)).toBe(true);
    for (let i = 1; i < reports.length; i++) expect(reports[i].loadedBytes).toBeGreaterThan(reports[i - 1].loadedBytes);
    expect(reports[reports.length - 1].loadedBytes).toBe(total);
  });

  test('a progress callback that throws does not fail the load, and a non-function is a typed error', async () => {
    const dir = sharedPath('golden', 'tiny-mosaic-bin');
    const model = await loadModel(dir, {
      device: 'cpu',
      onProgress: () => {
        throw new Error('listener bug');
      },
    });
    await model.dispose();
    await expect(loadModel(dir, { device: 'cpu', onProgress: 42 as never })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});
