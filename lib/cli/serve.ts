import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { loadConfig } from '../config';
import { FlashMptError } from '../errors';
import { createServer, ReplicaPool } from '../server';
import { optionalNumber, parseCommandArgs, parseDeviceList } from './args';
import { loadProgressBar } from './progress';

export const serveUsage = `flash-mpt serve --model DIR [--host 127.0.0.1] [--port 8080] [options]
  OpenAI-compatible server: POST /v1/completions, GET /v1/models, GET /health, GET /metrics
  --device cpu|cuda|cuda:N|auto   --dtype bf16|f16|f32   --max-context N   --name ID (default: the folder's name)
  --max-sequences N (default 64)  --max-queue N (default 256)   --queue-timeout-ms MS (default 60000, 0 = none)
  --kv-cache-tokens N   KV cache shared by the sequences (paged; default 8 × the context: 8 at full length, or
                        up to --max-sequences shorter ones)
  --devices 0,1   one replica per GPU behind the one port, each request to the least-loaded replica (instead of
                  --device); --devices cpu,cpu runs CPU replicas, which exist to exercise the routing without GPUs`;

const DEFAULT_MAX_SEQUENCES = 64;
const DEFAULT_KV_CONTEXTS = 8;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, {
    model: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8080' },
    name: { type: 'string' },
    device: { type: 'string' },
    devices: { type: 'string' },
    dtype: { type: 'string' },
    'max-context': { type: 'string' },
    'max-sequences': { type: 'string' },
    'kv-cache-tokens': { type: 'string' },
    'max-queue': { type: 'string' },
    'queue-timeout-ms': { type: 'string' },
  });
  if (!values.model) throw new FlashMptError('E_INVALID_ARGUMENT', `--model DIR is required\n${serveUsage}`);
  if (positionals.length > 0) throw new FlashMptError('E_INVALID_ARGUMENT', `unexpected argument '${positionals[0]}'\n${serveUsage}`);
  const port = optionalNumber(values.port, '--port')!;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FlashMptError('E_INVALID_ARGUMENT', `--port must be an integer in [0, 65535], got '${values.port}'`);
  const host = values.host!;
  const modelName = values.name ?? path.basename(path.resolve(values.model));
  if (values.device !== undefined && values.devices !== undefined) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `pass --device for one replica or --devices for several, not both\n${serveUsage}`);
  }
  const devices = values.devices === undefined ? [values.device ?? 'auto'] : parseDeviceList(values.devices, '--devices');

  const maxContext = optionalNumber(values['max-context'], '--max-context');
  const context = maxContext ?? (await loadConfig(values.model)).maxSeqLen;
  const progress = loadProgressBar(`loading ${values.model}`);
  const pool = await ReplicaPool.load(values.model, devices, {
    dtype: values.dtype as 'bf16' | undefined,
    maxContext,
    kvCacheTokens: optionalNumber(values['kv-cache-tokens'], '--kv-cache-tokens') ?? DEFAULT_KV_CONTEXTS * context,
    maxSequences: optionalNumber(values['max-sequences'], '--max-sequences') ?? DEFAULT_MAX_SEQUENCES,
    maxQueue: optionalNumber(values['max-queue'], '--max-queue'),
    queueTimeoutMs: optionalNumber(values['queue-timeout-ms'], '--queue-timeout-ms'),
    onProgress: progress.onProgress,
  }).finally(progress.stop);
  try {
    const server = createServer(pool, { modelName });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new FlashMptError('E_INVALID_ARGUMENT', `cannot listen on ${host}:${port}: ${err.message}`, { cause: err })));
      server.listen(port, host, resolve);
    });
    const { port: bound } = server.address() as AddressInfo;
    const on = pool.replicas.map((r) => r.label).join(', ');
    process.stderr.write(`flash-mpt: serving '${modelName}' on ${on} at http://${host}:${bound}/v1 (Ctrl-C stops)\n`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        server.close(() => resolve());
        server.closeAllConnections();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  } finally {
    await pool.dispose();
  }
}
