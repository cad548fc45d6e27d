/**
 * An OpenAI-compatible HTTP server over one Model or a ReplicaPool of them, on node:http alone: POST
 * /v1/completions (JSON or SSE), GET /v1/models, GET /health, GET /metrics. Each request goes to one replica
 * (the least loaded), where concurrent requests share decode steps through the model's scheduler, whose queue
 * limits (loadModel's maxQueue, queueTimeoutMs) turn overload into 429s. No request can crash the server: every
 * failure becomes an OpenAI-style error reply (a 500 as the last resort).
 */
import * as http from 'node:http';
import { z } from 'zod';
import { FlashMptError } from '../errors';
import type { Model } from '../model';
import { zodIssuesMessage } from '../validation';
import { handleCompletions } from './completions';
import { HttpError, sendError, sendJson, toHttpError } from './http';
import { prometheusText } from './metrics';
import { ReplicaPool } from './replicas';

export { ReplicaPool } from './replicas';
export type { Replica, ReplicaLoadOptions } from './replicas';

export const ServerOptionsSchema = z.strictObject({
  /** The model id that /v1/models lists and requests must name. */
  modelName: z.string().min(1).default('flash-mpt'),
  /** Larger request bodies get 413. */
  maxBodyBytes: z.int().positive().default(1 << 20),
});
export type ServerOptions = z.input<typeof ServerOptionsSchema>;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

/** The server does not own what it serves: dispose the model or pool after closing it. */
export function createServer(modelOrPool: Model | ReplicaPool, options: ServerOptions = {}): http.Server {
  const parsed = ServerOptionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `invalid createServer options: ${zodIssuesMessage(parsed.error)}`, { details: parsed.error.issues });
  }
  const { modelName, maxBodyBytes } = parsed.data;
  const pool = modelOrPool instanceof ReplicaPool ? modelOrPool : new ReplicaPool([modelOrPool]);
  const created = Math.floor(Date.now() / 1000);

  const routes: Record<string, Record<string, Handler>> = {
    '/health': {
      GET: (_req, res) => {
        const replicas = pool.replicas.map(({ label, model }) => {
          const { runningSequences, queueLength } = model.schedulerMetrics();
          return { replica: label, device: model.device, status: model.disposed ? 'disposed' : 'ok', runningSequences, queueLength };
        });
        const live = replicas.filter((r) => r.status === 'ok').length;
        if (live === 0) throw new FlashMptError('E_DISPOSED', 'every replica of this model has been disposed'); // → 503
        sendJson(res, 200, { status: live === replicas.length ? 'ok' : 'degraded', replicas });
      },
    },
    '/v1/models': {
      GET: (_req, res) => {
        const card = { id: modelName, object: 'model', created, owned_by: 'flash-mpt', max_model_len: pool.maxContext };
        sendJson(res, 200, { object: 'list', data: [card] });
      },
    },
    '/metrics': {
      GET: (_req, res) => {
        const text = prometheusText(pool.replicas);
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      },
    },
    '/v1/completions': {
      POST: (req, res) => handleCompletions({ pool, modelName, maxBodyBytes }, req, res),
    },
  };

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    const methods = routes[pathname];
    if (!methods) {
      throw new HttpError(404, { message: `no route for ${req.method} ${pathname}`, type: 'invalid_request_error', param: null, code: 'not_found' });
    }
    const handler = methods[req.method ?? ''];
    if (!handler) {
      const allowed = Object.keys(methods).join(', ');
      throw new HttpError(405, { message: `${pathname} accepts ${allowed}, not ${req.method}`, type: 'invalid_request_error', param: null, code: 'method_not_allowed' }, { allow: allowed });
    }
    await handler(req, res);
  }

  return http.createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      // Past the headers of a stream the status is spent: all that is left is to close the connection.
      if (res.headersSent) res.destroy();
      else sendError(res, toHttpError(err));
    });
  });
}
