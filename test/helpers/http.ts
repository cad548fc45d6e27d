import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';

/** Starts `server` on an ephemeral loopback port; resolves to its base URL. */
export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes the server and its keep-alive connections, so a test run leaves no socket open. */
export async function shutDown(server: Server | undefined): Promise<void> {
  if (!server) return;
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeAllConnections();
  await closed;
}

/** The official OpenAI client pointed at a flash-mpt server (no retries: a failure must show). */
export function clientFor(base: string): OpenAI {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0 });
}
