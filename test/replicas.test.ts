/**
 * A ReplicaPool behind the OpenAI-compatible server, on two CPU replicas of one small checkpoint (CPU replicas
 * stand in for GPUs: the routing is the same), driven by the official `openai` client on loopback: concurrent
 * requests spread over both replicas with the greedy answers of a single model, a busy replica is passed over,
 * a replica that is aborted on or disposed leaves the other serving; and the validation of `--devices`.
 */
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import OpenAI from 'openai';
import { createServer, FlashMptError, loadModel, Model, ReplicaPool, StreamChunk } from '../lib';
import { parseDeviceList } from '../lib/cli/args';
import { serveCommand } from '../lib/cli/serve';
import { describeWithData } from './helpers/data';
import { clientFor, listen, shutDown } from './helpers/http';
import { makeTextModelFolder } from './helpers/tiny-model';

const MODEL_NAME = 'tiny-mpt';
const PROMPT = 'The quick brown fox jumps over the lazy dog. Once upon a time';
const LOAD_OPTIONS = { maxSequences: 8, maxContext: 256, threads: 1 };

/** Every sample of /metrics, keyed as written: `flash_mpt_requests_total` or `flash_mpt_requests_total{replica="cpu#0"}`. */
async function metrics(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(flash_mpt_\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) values[match[1]] = Number(match[2]);
  }
  return values;
}

const requestsOf = (m: Record<string, number>, replica: string) => m[`flash_mpt_requests_total{replica="${replica}"}`];

async function streamText(stream: AsyncIterable<OpenAI.Completion>): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  return text;
}

describeWithData('replica pool behind the server (two CPU replicas)', 'data/gpt-neox-20b/tokenizer.json', () => {
  let dir: string;
  let single: Model;
  let pool: ReplicaPool;
  let server: Server;
  let base: string;

  /** The greedy completion of one model alone. */
  const solo = async (prompt: string, maxTokens: number) => (await single.generate(prompt, { maxTokens, temperature: 0 })).text;

  beforeAll(async () => {
    dir = await makeTextModelFolder();
    single = await loadModel(dir, { device: 'cpu', ...LOAD_OPTIONS });
    pool = await ReplicaPool.load(dir, ['cpu', 'cpu'], LOAD_OPTIONS);
    server = createServer(pool, { modelName: MODEL_NAME });
    base = await listen(server);
  });
  afterAll(async () => {
    await shutDown(server);
    await pool?.dispose();
    await single?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('/v1/models lists the one model; /health lists the replicas; /metrics has totals and per-replica samples', async () => {
    expect(pool.replicas.map((r) => r.label)).toEqual(['cpu#0', 'cpu#1']);
    const models = await clientFor(base).models.list();
    expect(models.data.map((m) => [m.id, (m as unknown as { max_model_len: number }).max_model_len])).toEqual([[MODEL_NAME, 256]]);
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: 'ok',
      replicas: ['cpu#0', 'cpu#1'].map((replica) => ({ replica, device: 'cpu', status: 'ok', runningSequences: 0, queueLength: 0 })),
    });
    const m = await metrics(base);
    expect(m['flash_mpt_kv_blocks_total{replica="cpu#0"}']).toBe(8 * (256 / 64));
    expect(m.flash_mpt_kv_blocks_total).toBe(2 * 8 * (256 / 64));
  });

  test('8 concurrent requests spread over both replicas, each answered as a single model answers it', async () => {
    const requests = Array.from({ length: 8 }, (_, i) => ({ model: MODEL_NAME, prompt: `${PROMPT.slice(0, 12 + 4 * i)} #${i}`, max_tokens: 8 + i, temperature: 0 }));
    const expected: string[] = [];
    for (const r of requests) expected.push(await solo(r.prompt, r.max_tokens));
    const before = await metrics(base);
    const texts = await Promise.all(
      requests.map(async (r, i) => {
        const client = clientFor(base);
        if (i % 2 === 0) return (await client.completions.create(r)).choices[0].text;
        return streamText(await client.completions.create({ ...r, stream: true }));
      }),
    );
    expect(texts).toEqual(expected);
    const after = await metrics(base);
    const routed = ['cpu#0', 'cpu#1'].map((replica) => requestsOf(after, replica) - requestsOf(before, replica));
    expect(routed[0]).toBeGreaterThan(0);
    expect(routed[1]).toBeGreaterThan(0);
    expect(routed[0] + routed[1]).toBe(8);
    expect(after.flash_mpt_requests_total - before.flash_mpt_requests_total).toBe(8);
  });

  test('while one replica holds a long stream, new requests go to the other; equal loads take turns', async () => {
    const [busy, idle] = pool.replicas;
    const held = busy.model.stream(PROMPT, { maxTokens: 200, temperature: 0 });
    await held.next(); // admitted: the busy replica runs one sequence
    try {
      const before = await metrics(base);
      expect(before[`flash_mpt_running_sequences{replica="${busy.label}"}`]).toBe(1);
      const client = clientFor(base);
      for (let i = 0; i < 3; i++) {
        const completion = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 4, temperature: 0 });
        expect(completion.choices[0].text).toBe(await solo(PROMPT, 4));
      }
      const after = await metrics(base);
      expect(requestsOf(after, idle.label) - requestsOf(before, idle.label)).toBe(3);
      expect(requestsOf(after, busy.label) - requestsOf(before, busy.label)).toBe(0);
    } finally {
      await held.return(undefined as never);
    }
    // Both idle again: consecutive requests alternate.
    const before = pool.replicas.map((r) => r.requests);
    for (let i = 0; i < 4; i++) pool.route();
    expect(pool.replicas.map((r, i) => r.requests - before[i])).toEqual([2, 2]);
  });

  test('a client leaving one replica mid-stream, then that replica disposed, leave the other serving; none left is a 503', async () => {
    const own = await ReplicaPool.load(dir, ['cpu', 'cpu'], LOAD_OPTIONS);
    const ownServer = createServer(own, { modelName: MODEL_NAME });
    try {
      const ownBase = await listen(ownServer);
      const [first, second] = own.replicas;
      // A fresh pool routes to cpu#0 first; breaking out of the stream closes the connection, which aborts it.
      const maxTokens = 200;
      const stream = await clientFor(ownBase).completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, stream: true });
      for await (const chunk of stream) if (chunk.choices[0]?.text) break;
      let m = await metrics(ownBase);
      for (const deadline = Date.now() + 10_000; m['flash_mpt_running_sequences{replica="cpu#0"}'] > 0 && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        m = await metrics(ownBase);
      }
      expect(m['flash_mpt_running_sequences{replica="cpu#0"}']).toBe(0);
      expect(m['flash_mpt_generated_tokens_total{replica="cpu#0"}']).toBeLessThan(maxTokens);
      expect(own.replicas.map((r) => r.requests)).toEqual([1, 0]);

      // Disposing cpu#0 fails the stream it runs; the one cpu#1 runs goes on to the end.
      const kept = second.model.stream(PROMPT, { maxTokens: 40, temperature: 0 });
      const lost = first.model.stream(PROMPT, { maxTokens: 40, temperature: 0 });
      const firstKept = await kept.next();
      await lost.next();
      await first.model.dispose();
      const drain = async (s: AsyncGenerator<StreamChunk, unknown>) => {
        let text = '';
        for (let step = await s.next(); !step.done; step = await s.next()) text += step.value.text;
        return text;
      };
      // E_DISPOSED, or E_ABORTED when its step in flight landed first.
      await expect(drain(lost)).rejects.toBeInstanceOf(FlashMptError);
      expect((firstKept.done ? '' : firstKept.value.text) + (await drain(kept))).toBe(await solo(PROMPT, 40));

      const health = await fetch(`${ownBase}/health`);
      expect(health.status).toBe(200);
      const body = (await health.json()) as { status: string; replicas: Array<{ status: string }> };
      expect(body.status).toBe('degraded');
      expect(body.replicas.map((r) => r.status)).toEqual(['disposed', 'ok']);
      const client = clientFor(ownBase);
      for (let i = 0; i < 2; i++) {
        const completion = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 6, temperature: 0 });
        expect(completion.choices[0].text).toBe(await solo(PROMPT, 6));
      }
      expect(own.replicas.map((r) => r.requests)).toEqual([1, 2]);
      expect((await metrics(ownBase)).flash_mpt_requests_total).toBe(3);

      await second.model.dispose();
      expect((await fetch(`${ownBase}/health`)).status).toBe(503);
      const none = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 2 }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(none).toBeInstanceOf(OpenAI.APIError);
      expect((none as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    } finally {
      await shutDown(ownServer);
      await own.dispose();
    }
  });

  test('a pool needs distinct models of one maxContext; a failed load disposes the replicas already loaded', async () => {
    expect(() => new ReplicaPool([])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    const [a] = pool.replicas;
    expect(() => new ReplicaPool([a.model, a.model])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => new ReplicaPool([a.model, single])).not.toThrow();
    const shorter = await loadModel(dir, { device: 'cpu', maxContext: 128, threads: 1 });
    try {
      expect(() => new ReplicaPool([a.model, shorter])).toThrow(/replicas must share maxContext, got 256, 128/);
    } finally {
      await shorter.dispose();
    }
    await expect(ReplicaPool.load(dir, ['cpu', 'cuda:7'], LOAD_OPTIONS)).rejects.toMatchObject({ code: 'E_DEVICE' });
  });
});

describe('--devices', () => {
  test('GPU ordinals or cpu entries', () => {
    expect(parseDeviceList('0,1', '--devices')).toEqual(['cuda:0', 'cuda:1']);
    expect(parseDeviceList('cuda:1, 3', '--devices')).toEqual(['cuda:1', 'cuda:3']);
    expect(parseDeviceList('cpu,cpu', '--devices')).toEqual(['cpu', 'cpu']);
  });

  test.each([
    ['', /expects comma-separated GPU ordinals/],
    ['0,,1', /expects comma-separated GPU ordinals/],
    ['gpu0', /expects comma-separated GPU ordinals/],
    ['-1', /expects comma-separated GPU ordinals/],
    ['0,0', /names cuda:0 twice/],
    ['cpu,0', /mixes cpu and GPUs/],
  ])("'%s' is E_INVALID_ARGUMENT", (text, message) => {
    expect(() => parseDeviceList(text, '--devices')).toThrow(FlashMptError);
    expect(() => parseDeviceList(text, '--devices')).toThrow(message);
  });

  test('flash-mpt serve refuses a bad list, or --device with --devices, before loading anything', async () => {
    const noModel = '/nonexistent/model';
    await expect(serveCommand(['--model', noModel, '--devices', '0,x'])).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(serveCommand(['--model', noModel, '--device', 'cpu', '--devices', 'cpu,cpu'])).rejects.toThrow(/not both/);
  });
});
