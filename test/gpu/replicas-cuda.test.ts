/**
 * `flash-mpt serve --devices 0,1` on two GPUs (issue 8): a ReplicaPool of one model per GPU behind the OpenAI-compatible
 * server, driven by the official `openai` client on loopback. Concurrent requests spread over both GPUs and each is
 * answered as the model on cuda:0 alone answers it. Skipped (with the reason) on machines with fewer than 2 GPUs.
 */
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import { createServer, loadModel, Model, ReplicaPool } from '../../lib';
import { describeWithData } from '../helpers/data';
import { clientFor, listen, shutDown } from '../helpers/http';
import { makeTextModelFolder } from '../helpers/tiny-model';
import { describeGpus } from './gpu';

const MODEL_NAME = 'tiny-mpt';
const LOAD_OPTIONS = { maxSequences: 16, maxContext: 256 };

describeGpus(2, 'replica pool on cuda:0 and cuda:1 behind the server', () => {
  describeWithData('with the GPT-NeoX tokenizer', 'data/gpt-neox-20b/tokenizer.json', () => {
    let dir: string;
    let single: Model;
    let pool: ReplicaPool;
    let server: Server;
    let base: string;

    beforeAll(async () => {
      dir = await makeTextModelFolder();
      single = await loadModel(dir, { device: 'cuda:0', ...LOAD_OPTIONS });
      pool = await ReplicaPool.load(dir, ['cuda:0', 'cuda:1'], LOAD_OPTIONS);
      server = createServer(pool, { modelName: MODEL_NAME });
      base = await listen(server);
    }, 120_000);
    afterAll(async () => {
      await shutDown(server);
      await pool?.dispose();
      await single?.dispose();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test('32 concurrent clients are spread over both GPUs, each answered as one model alone answers it', async () => {
      expect(pool.replicas.map((r) => [r.label, r.model.device])).toEqual([
        ['cuda:0', 'cuda:0'],
        ['cuda:1', 'cuda:1'],
      ]);
      const requests = Array.from({ length: 32 }, (_, i) => ({ model: MODEL_NAME, prompt: `Request ${i}: the weather today is`, max_tokens: 12 + (i % 5), temperature: 0 }));
      const expected: string[] = [];
      for (const r of requests) expected.push((await single.generate(r.prompt, { maxTokens: r.max_tokens, temperature: 0 })).text);
      const texts = await Promise.all(requests.map(async (r) => (await clientFor(base).completions.create(r)).choices[0].text));
      expect(texts).toEqual(expected);
      const routed = pool.replicas.map((r) => r.requests);
      console.log(`replicas on two GPUs: requests routed ${JSON.stringify(Object.fromEntries(pool.replicas.map((r) => [r.label, r.requests])))}`);
      expect(routed[0] + routed[1]).toBe(32);
      expect(Math.min(...routed)).toBeGreaterThanOrEqual(8);
    }, 120_000);
  });
});
