/**
 * The HTTP server under a seeded storm of real loopback clients (CPU engine, GPT-NeoX tokenizer): completions and
 * streams with random options, streams the client drops mid-way, requests dropped before their answer, malformed
 * bodies and bad fields, against few sequence slots and a short queue, one model or two replicas. Every answer the client gets must be
 * well-formed (200 with a completion or a stream ending in [DONE]; 400 / 429 / 503 with an OpenAI-style error), and
 * afterwards the server serves on with no sequence, queue entry or KV block left held.
 */
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import { createServer, loadModel, Model, ReplicaPool } from '../lib';
import { describeWithData } from './helpers/data';
import { Fuzzer, rng } from './helpers/fuzz';
import { listen, shutDown } from './helpers/http';
import { sleep, within } from './helpers/time';
import { makeTextModelFolder } from './helpers/tiny-model';

const MODEL_NAME = 'tiny-mpt';
const CLIENTS = 40;
type Outcome = 'completed' | 'streamed' | 'dropped' | `refused ${number}`;

async function metrics(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Object.fromEntries([...text.matchAll(/^(flash_mpt_\w+(?:\{[^}]*\})?) (\S+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

/** An error answer: the status the storm allows and an OpenAI-style body. */
async function expectErrorAnswer(res: Response): Promise<Outcome> {
  expect([400, 429, 503]).toContain(res.status);
  const body = (await res.json()) as { error: { message: string; type: string } };
  expect(typeof body.error.message).toBe('string');
  expect(typeof body.error.type).toBe('string');
  return `refused ${res.status}`;
}

async function client(base: string, f: Fuzzer): Promise<Outcome> {
  await sleep(f.int(600));
  const behaviour = f.pick(['complete', 'complete', 'stream', 'stream', 'drop-stream', 'drop-early', 'malformed', 'bad-field'] as const);
  const request: Record<string, unknown> = {
    model: MODEL_NAME,
    prompt: f.pick(['Once upon a time', 'The capital of France is', 'def f(x):', [1, 2, 3, 4, 5]]),
    max_tokens: 1 + f.int(16),
    temperature: f.pick([0, 0.7, 1.2]),
    ...(f.int(2) ? { top_p: 0.9 } : {}),
    ...(f.int(3) === 0 ? { stop: [' the'] } : {}),
    ...(f.int(2) ? { seed: f.int(1000) } : {}),
    stream: behaviour === 'stream' || behaviour === 'drop-stream',
  };
  // Values every field refuses (null would mean the default, as in OpenAI's API).
  if (behaviour === 'bad-field') request[f.pick(['max_tokens', 'temperature', 'top_p', 'n'])] = f.pick([-1, 'x', [2]]);
  const body = behaviour === 'malformed' ? JSON.stringify(request).slice(0, 5 + f.int(20)) : JSON.stringify(request);
  const controller = new AbortController();
  if (behaviour === 'drop-early') setTimeout(() => controller.abort(), f.int(10));
  let res: Response;
  try {
    res = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: controller.signal });
  } catch (err) {
    if (behaviour === 'drop-early' && controller.signal.aborted) return 'dropped';
    throw err;
  }
  if (behaviour === 'malformed' || behaviour === 'bad-field') {
    expect(res.status).toBe(400);
    return expectErrorAnswer(res);
  }
  if (res.status !== 200) return expectErrorAnswer(res);
  try {
    if (!request.stream) {
      const completion = (await res.json()) as { choices: Array<{ text: string; finish_reason: string }>; usage: { completion_tokens: number } };
      expect(typeof completion.choices[0].text).toBe('string');
      expect(completion.usage.completion_tokens).toBeLessThanOrEqual(request.max_tokens as number);
      return 'completed';
    }
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (behaviour === 'drop-stream' && text.includes('data: {')) {
        controller.abort();
        return 'dropped';
      }
    }
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    return 'streamed';
  } catch (err) {
    if (controller.signal.aborted) return 'dropped';
    throw err;
  }
}

describeWithData('the server under a storm of clients (CPU engine)', 'data/gpt-neox-20b/tokenizer.json', () => {
  const LOAD = { maxSequences: 4, maxContext: 128, maxQueue: 8, queueTimeoutMs: 0 };
  let dir: string;
  let model: Model;
  let pool: ReplicaPool;
  let servers: Server[];
  const bases: Record<string, string> = {};
  beforeAll(async () => {
    dir = await makeTextModelFolder();
    model = await loadModel(dir, { device: 'cpu', ...LOAD });
    pool = await ReplicaPool.load(dir, ['cpu', 'cpu'], LOAD);
    servers = [createServer(model, { modelName: MODEL_NAME }), createServer(pool, { modelName: MODEL_NAME })];
    bases['one model'] = await listen(servers[0]);
    bases['two replicas'] = await listen(servers[1]);
  });
  afterAll(async () => {
    for (const server of servers ?? []) await shutDown(server);
    await model?.dispose();
    await pool?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    [1, 'one model'],
    [2, 'one model'],
    [3, 'two replicas'],
  ])('seed %i, %s: every answer is well-formed, and the server serves on with nothing held', async (seed, behind) => {
    const base = bases[behind];
    const fuzzer = new Fuzzer(rng(seed));
    const outcomes = await within(
      Promise.all(Array.from({ length: CLIENTS }, () => client(base, new Fuzzer(rng(fuzzer.int(1 << 30)))))),
      60_000,
      async () => `clients still waiting after 60 s: ${JSON.stringify(await metrics(base))}`,
    );
    const tally: Record<string, number> = {};
    for (const outcome of outcomes) tally[outcome] = (tally[outcome] ?? 0) + 1;
    console.log(`server stress seed ${seed}: ${JSON.stringify(tally)}`);
    // Requests that reached a slot or the queue (no queue timeout here) all ran: the storm served some.
    expect((tally.completed ?? 0) + (tally.streamed ?? 0)).toBeGreaterThan(0);

    // Every series of the held counts at 0 (one per replica behind a pool).
    const held = (m: Record<string, number>) =>
      Object.entries(m).filter(([name, value]) => /^flash_mpt_(running_sequences|queue_length|kv_blocks_in_use)\b/.test(name) && value !== 0);
    let m = await metrics(base);
    for (const deadline = Date.now() + 10_000; held(m).length > 0 && Date.now() < deadline; ) {
      await sleep(20);
      m = await metrics(base);
    }
    expect(held(m)).toEqual([]);
    expect(Object.keys(m).some((name) => name.startsWith('flash_mpt_running_sequences'))).toBe(true);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const res = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: MODEL_NAME, prompt: 'Hello', max_tokens: 3 }) });
    expect(res.status).toBe(200);
  }, 120_000);
});
