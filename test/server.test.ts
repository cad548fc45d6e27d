/**
 * The OpenAI-compatible server on loopback, driven by the official `openai` client: completions, streaming,
 * stop strings, seeds, 16 concurrent clients, a client that disconnects mid-stream, and bad requests. The model is
 * a small random-weight MPT with the real GPT-NeoX tokenizer, on the CPU engine.
 */
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import OpenAI from 'openai';
import { createServer, loadModel, Model } from '../lib';
import { describeWithData } from './helpers/data';
import { clientFor, listen, shutDown } from './helpers/http';
import { makeTextModelFolder } from './helpers/tiny-model';

const MODEL_NAME = 'tiny-mpt';
const PROMPT = 'The quick brown fox jumps over the lazy dog. Once upon a time';

/** The APIError a call rejects with. */
async function apiError(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await call;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  throw new Error('the call succeeded');
}

async function metrics(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(flash_mpt_\w+) (\S+)$/.exec(line);
    if (match) values[match[1]] = Number(match[2]);
  }
  return values;
}

async function postRaw(base: string, body: string): Promise<{ status: number; json: { error: Record<string, unknown> } }> {
  const res = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, json: (await res.json()) as { error: Record<string, unknown> } };
}

describeWithData('OpenAI-compatible server', 'data/gpt-neox-20b/tokenizer.json', () => {
  let dir: string;
  let model: Model;
  let server: Server;
  let base: string;
  let client: OpenAI;

  beforeAll(async () => {
    dir = await makeTextModelFolder();
    model = await loadModel(dir, { device: 'cpu', maxSequences: 16, maxContext: 512 });
    server = createServer(model, { modelName: MODEL_NAME });
    base = await listen(server);
    client = clientFor(base);
  });
  afterAll(async () => {
    await shutDown(server);
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('GET /v1/models lists the served model; GET /health answers', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL_NAME]);
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', replicas: [{ replica: 'cpu', device: 'cpu', status: 'ok', runningSequences: 0, queueLength: 0 }] });
  });

  test('a completion returns what model.generate returns, with usage', async () => {
    const expected = await model.generate(PROMPT, { maxTokens: 12, temperature: 0 });
    const completion = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 12, temperature: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices).toHaveLength(1);
    expect(completion.choices[0].text).toBe(expected.text);
    expect(completion.choices[0].finish_reason).toBe(expected.finishReason === 'length' ? 'length' : 'stop');
    expect(completion.usage).toEqual({
      prompt_tokens: expected.usage.promptTokens,
      completion_tokens: expected.usage.completionTokens,
      total_tokens: expected.usage.promptTokens + expected.usage.completionTokens,
    });
    // The same prompt as token ids, and as an array of one string.
    const ids = model.tokenizer!.encode(PROMPT);
    const byIds = await client.completions.create({ model: MODEL_NAME, prompt: ids, max_tokens: 12, temperature: 0 });
    expect(byIds.choices[0].text).toBe(expected.text);
    const byList = await client.completions.create({ model: MODEL_NAME, prompt: [PROMPT], max_tokens: 12, temperature: 0 });
    expect(byList.choices[0].text).toBe(expected.text);
  });

  test('streamed chunks concatenate to the non-streamed text; usage comes last when asked', async () => {
    const request = { model: MODEL_NAME, prompt: PROMPT, max_tokens: 20, temperature: 0.9, seed: 11, logit_bias: { 0: -100 } };
    const whole = await client.completions.create(request);
    const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const finishReasons: Array<string | null> = [];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        text += choice.text;
        finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0].text);
    expect(finishReasons.at(-1)).toBe('length');
    expect(finishReasons.slice(0, -1).every((r) => r === null)).toBe(true);
    expect(usage).toEqual(whole.usage);
  });

  test('a stop string ends the completion and is left out of the text, streamed or not', async () => {
    const free = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 24, temperature: 0, logit_bias: { 0: -100 } });
    const text = free.choices[0].text;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    expect(stop.length).toBe(3);
    const expected = text.slice(0, text.indexOf(stop));
    const stopped = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 24, temperature: 0, stop: [stop] });
    expect(stopped.choices[0].text).toBe(expected);
    expect(stopped.choices[0].finish_reason).toBe('stop');
    let streamed = '';
    for await (const chunk of await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 24, temperature: 0, stop, stream: true })) {
      streamed += chunk.choices[0]?.text ?? '';
    }
    expect(streamed).toBe(expected);
  });

  test('the same seed gives the same completion; another seed another one', async () => {
    const request = { model: MODEL_NAME, prompt: PROMPT, max_tokens: 24, temperature: 1.2, logit_bias: { 0: -100 } };
    const a = await client.completions.create({ ...request, seed: 5 });
    const b = await client.completions.create({ ...request, seed: 5 });
    const c = await client.completions.create({ ...request, seed: 6 });
    expect(b.choices[0].text).toBe(a.choices[0].text);
    expect(c.choices[0].text).not.toBe(a.choices[0].text);
  });

  test('16 concurrent clients each get their solo greedy completion', async () => {
    const requests = Array.from({ length: 16 }, (_, i) => ({
      model: MODEL_NAME,
      prompt: `${PROMPT.slice(0, 10 + 3 * i)} #${i}`,
      max_tokens: 6 + ((i * 5) % 15),
      temperature: 0,
    }));
    const solo: string[] = [];
    for (const r of requests) solo.push((await model.generate(r.prompt, { maxTokens: r.max_tokens, temperature: 0 })).text);
    const texts = await Promise.all(
      requests.map(async (r, i) => {
        if (i % 2 === 0) return (await clientFor(base).completions.create(r)).choices[0].text;
        let text = '';
        for await (const chunk of await clientFor(base).completions.create({ ...r, stream: true })) text += chunk.choices[0]?.text ?? '';
        return text;
      }),
    );
    expect(texts).toEqual(solo);
  });

  test('a client that disconnects mid-stream frees its sequence and KV blocks', async () => {
    const before = await metrics(base);
    expect(before.flash_mpt_kv_blocks_in_use).toBe(0);
    const maxTokens = 400;
    const stream = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, logit_bias: { 0: -100 }, stream: true });
    let during: Record<string, number> | undefined;
    for await (const chunk of stream) {
      if (!chunk.choices[0]?.text) continue;
      during = await metrics(base);
      break; // closes the connection
    }
    expect(during!.flash_mpt_running_sequences).toBe(1);
    expect(during!.flash_mpt_kv_blocks_in_use).toBeGreaterThan(0);
    let after = await metrics(base);
    for (const deadline = Date.now() + 10_000; after.flash_mpt_kv_blocks_in_use > 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await metrics(base);
    }
    expect(after.flash_mpt_kv_blocks_in_use).toBe(0);
    expect(after.flash_mpt_running_sequences).toBe(0);
    // It stopped well before max_tokens: the disconnect, not the length, ended it.
    expect(after.flash_mpt_generated_tokens_total - before.flash_mpt_generated_tokens_total).toBeLessThan(maxTokens);
    expect(after.flash_mpt_kv_blocks_total).toBe(16 * (512 / 64)); // 16 sequences × 512 tokens in blocks of 64
    // Its prompt and its decode steps ran in the engine, and the counters say how long.
    expect(after.flash_mpt_prefill_seconds_total).toBeGreaterThan(before.flash_mpt_prefill_seconds_total);
    expect(after.flash_mpt_decode_seconds_total).toBeGreaterThan(before.flash_mpt_decode_seconds_total);
  });

  test('malformed JSON is a 400 invalid_request_error', async () => {
    const { status, json } = await postRaw(base, '{"model": "tiny-mpt", "prompt": ');
    expect(status).toBe(400);
    expect(json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
    expect(json.error.message).toMatch(/not valid JSON/);
  });

  test('bad fields are one 400 that lists every one of them', async () => {
    const bad = { model: MODEL_NAME, prompt: PROMPT, max_tokens: -1, temperature: 'hot', top_p: 5, n: 2, bogus: true };
    const error = await apiError(client.completions.create(bad as never));
    expect(error.status).toBe(400);
    expect(error.type).toBe('invalid_request_error');
    expect(error.param).toBeTruthy();
    for (const field of ['max_tokens', 'temperature', 'top_p', 'n', 'bogus']) expect(error.message).toContain(field);
    const noPrompt = await postRaw(base, JSON.stringify({ model: MODEL_NAME }));
    expect(noPrompt.status).toBe(400);
    expect(noPrompt.json.error.param).toBe('prompt');
  });

  test('requests the model refuses are 400s: a prompt past the context, an empty prompt, out-of-range ids', async () => {
    const long = await apiError(client.completions.create({ model: MODEL_NAME, prompt: [1, 2, 3], max_tokens: 600 }));
    expect(long.status).toBe(400);
    expect(long.code).toBe('context_length_exceeded');
    expect((await apiError(client.completions.create({ model: MODEL_NAME, prompt: '' }))).status).toBe(400);
    expect((await apiError(client.completions.create({ model: MODEL_NAME, prompt: [1, 99999] }))).status).toBe(400);
    const streamed = await apiError(client.completions.create({ model: MODEL_NAME, prompt: [1, 99999], stream: true }));
    expect(streamed.status).toBe(400);
  });

  test('unknown routes, methods and models are 404 / 405', async () => {
    expect((await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}' })).status).toBe(404);
    const wrongMethod = await fetch(`${base}/v1/completions`);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    const unknownModel = await apiError(client.completions.create({ model: 'gpt-4', prompt: PROMPT }));
    expect(unknownModel.status).toBe(404);
    expect(unknownModel.code).toBe('model_not_found');
  });

  describe('under load', () => {
    let busyModel: Model;
    let busyServer: Server;
    let busyBase: string;
    beforeAll(async () => {
      busyModel = await loadModel(dir, { device: 'cpu', maxSequences: 1, maxQueue: 0 });
      busyServer = createServer(busyModel, { modelName: MODEL_NAME, maxBodyBytes: 4096 });
      busyBase = await listen(busyServer);
    });
    afterAll(async () => {
      await shutDown(busyServer);
      await busyModel?.dispose();
    });

    test('a full queue is a 429, and the server serves again once a slot frees', async () => {
      const held: AsyncGenerator<unknown, unknown> = busyModel.stream(PROMPT, { maxTokens: 50 });
      await held.next();
      const client = clientFor(busyBase);
      const full = await apiError(client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 4 }));
      expect(full.status).toBe(429);
      expect(full.code).toBe('queue_full');
      const fullStream = await apiError(client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 4, stream: true }));
      expect(fullStream.status).toBe(429);
      await held.return(undefined);
      const ok = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 4 });
      expect(ok.usage?.completion_tokens).toBeGreaterThan(0);
    });

    test('a body over maxBodyBytes is a 413', async () => {
      const { status, json } = await postRaw(busyBase, JSON.stringify({ model: MODEL_NAME, prompt: 'x'.repeat(5000) }));
      expect(status).toBe(413);
      expect(json.error.code).toBe('body_too_large');
    });
  });
});
