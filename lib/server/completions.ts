/**
 * POST /v1/completions, OpenAI-compatible. The sampling fields are renamed to generate()'s options and checked
 * by its own schema (one source of ranges and defaults); errors name the request's snake_case fields. Streaming
 * replies are server-sent events in OpenAI's completion chunk format, ending with `data: [DONE]`.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { FinishReason, GenerateResult, Prompt, StreamChunk } from '../model';
import { GenerateOptions, GenerateOptionsSchema } from '../sampling';
import { zodIssuesMessage } from '../validation';
import { HttpError, readJsonBody, sendJson, toHttpError } from './http';
import type { ReplicaPool } from './replicas';

/** Request field → generate() option. */
const SAMPLING_FIELDS = {
  max_tokens: 'maxTokens',
  temperature: 'temperature',
  top_p: 'topP',
  top_k: 'topK',
  min_p: 'minP',
  repetition_penalty: 'repetitionPenalty',
  presence_penalty: 'presencePenalty',
  frequency_penalty: 'frequencyPenalty',
  logit_bias: 'logitBias',
  seed: 'seed',
  stop: 'stop',
} as const satisfies Record<string, keyof GenerateOptions>;

const FIELD_OF_OPTION = new Map<PropertyKey, string>(Object.entries(SAMPLING_FIELDS).map(([field, option]) => [option, field]));

const TokenIds = z.array(z.int().min(0)).min(1);

const CompletionRequestSchema = z.strictObject({
  model: z.string(),
  prompt: z.union([z.string(), TokenIds, z.tuple([z.string()]), z.tuple([TokenIds])], {
    error: 'expected a string, an array of token ids, or an array holding one of either (batched prompts are not supported)',
  }),
  n: z.literal(1, { error: 'only n = 1 is supported' }).nullish(),
  best_of: z.literal(1, { error: 'only best_of = 1 is supported' }).nullish(),
  echo: z.literal(false, { error: 'echo is not supported' }).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullish(),
  user: z.string().optional(),
  // Checked after renaming, by GenerateOptionsSchema.
  ...Object.fromEntries(Object.keys(SAMPLING_FIELDS).map((field) => [field, z.unknown().optional()])),
});

interface CompletionRequest {
  model: string;
  prompt: Prompt;
  stream: boolean;
  includeUsage: boolean;
  options: GenerateOptions;
}

/** Validates the whole body at once, so one 400 lists every bad field. */
function parseCompletionRequest(body: unknown): CompletionRequest {
  const request = CompletionRequestSchema.safeParse(body);
  const issues = request.success ? [] : [...request.error.issues];
  const fields = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  // null means "the default" to OpenAI clients.
  const options = Object.fromEntries(
    Object.entries(SAMPLING_FIELDS)
      .filter(([field]) => fields[field] !== undefined && fields[field] !== null)
      .map(([field, option]) => [option, fields[field]]),
  );
  const sampling = GenerateOptionsSchema.safeParse(options);
  if (!sampling.success) {
    for (const issue of sampling.error.issues) issues.push({ ...issue, path: [FIELD_OF_OPTION.get(issue.path[0]) ?? '', ...issue.path.slice(1)] });
  }
  if (!request.success || issues.length > 0) {
    const first = issues[0];
    const param = first.code === 'unrecognized_keys' ? first.keys[0] : first.path.map(String).join('.') || null;
    throw HttpError.invalid(`invalid request: ${zodIssuesMessage(new z.ZodError(issues))}`, param, 'invalid_value');
  }
  const data = request.data;
  const raw = Array.isArray(data.prompt) && data.prompt.length === 1 && typeof data.prompt[0] !== 'number' ? data.prompt[0] : data.prompt;
  return {
    model: data.model,
    prompt: typeof raw === 'string' ? raw : { ids: raw as number[] },
    stream: data.stream ?? false,
    includeUsage: data.stream_options?.include_usage ?? false,
    options: options as GenerateOptions,
  };
}

/** OpenAI knows 'stop' and 'length': an eos token or a stop string both stop. */
function openAiFinishReason(reason: FinishReason): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

function usageOf(result: GenerateResult) {
  const { promptTokens, completionTokens } = result.usage;
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export interface CompletionsContext {
  pool: ReplicaPool;
  modelName: string;
  maxBodyBytes: number;
}

export async function handleCompletions(context: CompletionsContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const request = parseCompletionRequest(await readJsonBody(req, context.maxBodyBytes));
  if (request.model !== context.modelName) {
    throw new HttpError(404, {
      message: `the model '${request.model}' does not exist; this server serves '${context.modelName}'`,
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    });
  }
  // A client that goes away aborts its sequence, which frees its slot and KV blocks at once.
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  // The first next() below runs in this same tick and opens the sequence, so the next request's route() sees it.
  const stream = context.pool.route().model.stream(request.prompt, { ...request.options, signal: controller.signal });
  const meta = { id: `cmpl-${randomUUID().replace(/-/g, '')}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: context.modelName };

  if (!request.stream) {
    let step = await stream.next();
    while (!step.done) step = await stream.next();
    const result = step.value;
    if (result.finishReason === 'abort') return;
    sendJson(res, 200, {
      ...meta,
      choices: [{ text: result.text, index: 0, logprobs: null, finish_reason: openAiFinishReason(result.finishReason) }],
      usage: usageOf(result),
    });
    return;
  }

  // The first step comes before the headers, so queue-full and option errors still get their status code.
  let step: IteratorResult<StreamChunk, GenerateResult> = await stream.next();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (data: unknown) => writeEvent(res, JSON.stringify(data));
  try {
    while (!step.done) {
      if (step.value.text) await send({ ...meta, choices: [{ text: step.value.text, index: 0, logprobs: null, finish_reason: null }] });
      step = await stream.next();
    }
    const result = step.value;
    if (result.finishReason === 'abort') return;
    await send({ ...meta, choices: [{ text: '', index: 0, logprobs: null, finish_reason: openAiFinishReason(result.finishReason) }] });
    if (request.includeUsage) await send({ ...meta, choices: [], usage: usageOf(result) });
  } catch (err) {
    await send({ error: toHttpError(err).body });
  }
  await writeEvent(res, '[DONE]');
  res.end();
}

/** One server-sent event; waits while the socket's buffer is full (or until the client is gone). */
async function writeEvent(res: ServerResponse, data: string): Promise<void> {
  if (res.destroyed) return;
  if (res.write(`data: ${data}\n\n`)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
