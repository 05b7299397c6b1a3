/**
 * The proxy's control endpoint (JSON over HTTP, for `raceguard run` and
 * `raceguard audit`, or curl):
 * - `GET /status`: where it listens, open connections, statements recorded, delays;
 * - `GET /trace?since=ID`: the recorded statements after `ID`; `DELETE /trace` forgets them;
 * - `PUT /label` `{ "label": "POST /buy #1" }` labels what arrives next (`null` to stop);
 * - `GET /delays`, `PUT /delays` `{ "delays": [{ "pattern": "SELECT products", "ms": 200 }] }`, `DELETE /delays`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { messageOf } from '../arguments.js';
import type { DbDelay } from './db-delays.js';
import { listen, type PgProxy } from './proxy.js';

/** A running control endpoint. */
export interface ProxyControl {
  readonly url: string;
  close(): Promise<void>;
}

type Route = (body: unknown, url: URL) => unknown;

export async function startControl(
  proxy: PgProxy,
  at: { readonly host?: string; readonly port?: number },
): Promise<ProxyControl> {
  const routes: Record<string, Route> = {
    'GET /status': () => ({
      listen: proxy.address,
      connections: proxy.connections(),
      statements: proxy.recording.size,
      label: proxy.recording.label,
      delays: proxy.delays(),
    }),
    'GET /trace': (_body, url) => proxy.recording.since(Number(url.searchParams.get('since') ?? 0)),
    'DELETE /trace': () => {
      proxy.recording.clear();
      return { ok: true };
    },
    'PUT /label': (body) => {
      const label = (body as { label?: unknown } | null)?.label;
      if (label !== null && typeof label !== 'string')
        throw new BadRequest('label: a string or null');
      proxy.recording.label = label;
      return { label };
    },
    'GET /delays': () => ({ delays: proxy.delays() }),
    'PUT /delays': (body) => {
      const delays = (body as { delays?: unknown } | null)?.delays;
      proxy.setDelays(delays as DbDelay[]);
      return { delays: proxy.delays() };
    },
    'DELETE /delays': () => {
      proxy.setDelays([]);
      return { delays: [] };
    },
  };
  const server = createServer((request, response) => {
    void answer(routes, request, response);
  });
  const address = await listen(server, at);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

class BadRequest extends Error {}

async function answer(
  routes: Record<string, Route>,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://control');
  const route = routes[`${request.method ?? 'GET'} ${url.pathname}`];
  const reply = (status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  if (route === undefined) {
    reply(404, { error: `no route ${request.method ?? ''} ${url.pathname}` });
    return;
  }
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = null;
    try {
      body = text === '' ? null : (JSON.parse(text) as unknown);
    } catch {
      throw new BadRequest('the body is not JSON');
    }
    reply(200, route(body, url));
  } catch (error) {
    reply(400, { error: messageOf(error) });
  }
}
