/** node:http plumbing shared by the routes: JSON bodies with a size limit, JSON replies, OpenAI-style errors. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, FlashMptError } from '../errors';

/** The body of an OpenAI error reply. */
export interface ApiError {
  message: string;
  type: 'invalid_request_error' | 'rate_limit_error' | 'server_error';
  param: string | null;
  code: string | null;
}

/** A request that ends in a non-2xx reply. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
    readonly headers: Record<string, string> = {},
  ) {
    super(body.message);
  }

  static invalid(message: string, param: string | null = null, code: string | null = null): HttpError {
    return new HttpError(400, { message, type: 'invalid_request_error', param, code });
  }
}

const STATUS_OF_CODE: Partial<Record<ErrorCode, number>> = {
  E_INVALID_ARGUMENT: 400,
  E_TOKEN_RANGE: 400,
  E_CONTEXT_LENGTH: 400,
  E_TOKENIZER: 400,
  E_QUEUE_FULL: 429,
  E_OUT_OF_MEMORY: 503,
  E_DISPOSED: 503,
};

/** Any thrown value as the reply it deserves: typed library errors map to 4xx/5xx, the rest is a 500. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof FlashMptError) {
    const status = STATUS_OF_CODE[err.code] ?? 500;
    const type = status === 400 ? 'invalid_request_error' : status === 429 ? 'rate_limit_error' : 'server_error';
    const code = err.code === 'E_CONTEXT_LENGTH' ? 'context_length_exceeded' : err.code === 'E_QUEUE_FULL' ? 'queue_full' : null;
    return new HttpError(status, { message: err.message, type, param: null, code });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new HttpError(500, { message: `internal error: ${message}`, type: 'server_error', param: null, code: null });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, error: HttpError): void {
  sendJson(res, error.status, { error: error.body }, error.headers);
}

/** The request body parsed as JSON; 413 past `limit` bytes, 400 when it is not JSON. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () => new HttpError(413, { message: `the request body exceeds ${limit} bytes`, type: 'invalid_request_error', param: null, code: 'body_too_large' });
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw HttpError.invalid(`the request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
}
