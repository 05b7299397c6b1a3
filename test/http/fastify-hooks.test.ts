/**
 * The Fastify plugin's own paths, beside the shared middleware suite: its
 * hooks are callback-style (no promise per request), so each way out of a
 * hook must still continue or end the request exactly once. A streamed
 * reply is not stored (a retry runs again); a `scope` that throws is a 500
 * that claims nothing; a store failure after the handler reaches `onError`
 * and the response is still sent; an `onError` that throws fails the
 * request instead of hanging it; a client that goes away mid-handler leaves
 * the key free or completed, never held for the rest of its lease.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Pool } from 'undici';
import { IdempotencyStoreError } from '../../packages/raceguard/src/idempotency/errors.js';
import { MemoryIdempotencyStore } from '../../packages/raceguard/src/idempotency/memory-store.js';
import type { IdempotencyStore } from '../../packages/raceguard/src/idempotency/store.js';
import {
  fastifyIdempotency,
  type FastifyIdempotencyOptions,
} from '../../packages/raceguard/src/http/fastify.js';

const key = (): string => `"${randomUUID()}"`;

interface Served {
  readonly url: string;
  readonly pool: Pool;
  readonly runs: Map<string, number>;
  /** Releases the handler of `/slow` waiting under this key. */
  readonly gates: Map<string, () => void>;
  close(): Promise<void>;
}

async function serve(options: Partial<FastifyIdempotencyOptions>): Promise<Served> {
  const runs = new Map<string, number>();
  const gates = new Map<string, () => void>();
  const ran = (request: { headers: Record<string, unknown> }): void => {
    const k = String(request.headers['idempotency-key']);
    runs.set(k, (runs.get(k) ?? 0) + 1);
  };
  const app: FastifyInstance = Fastify();
  await app.register(
    fastifyIdempotency({
      store: new MemoryIdempotencyStore(),
      scope: (request) => {
        if (request.headers['x-tenant'] === 'throw') throw new Error('no tenant');
        return 'acme';
      },
      ...options,
    }),
  );
  app.post('/stream', (request, reply) => {
    ran(request);
    return reply.type('text/plain').send(Readable.from(['chunk ', 'by ', 'chunk']));
  });
  app.post('/json', (request) => {
    ran(request);
    return { ok: true };
  });
  app.post('/hijack', (request, reply) => {
    ran(request);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    reply.raw.end('written by hand');
  });
  app.post('/slow', async (request) => {
    ran(request);
    const k = String(request.headers['idempotency-key']);
    // Only a key's first run waits for its gate: a retry that runs again answers at once.
    if (runs.get(k) === 1) await new Promise<void>((resolve) => gates.set(k, resolve));
    return { slow: true };
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const pool = new Pool(url, { connections: 8, pipelining: 1 });
  return {
    url,
    pool,
    runs,
    gates,
    close: async () => {
      await pool.close();
      await app.close();
    },
  };
}

async function post(
  served: Served,
  path: string,
  idempotencyKey: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; replayed: boolean; body: string }> {
  const response = await served.pool.request({
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey, ...headers },
    body: '{"amount":10}',
  });
  return {
    status: response.statusCode,
    replayed: response.headers['idempotent-replayed'] === 'true',
    body: await response.body.text(),
  };
}

describe('fastifyIdempotency: every way out of its hooks', { timeout: 60_000 }, () => {
  let served: Served;
  before(async () => {
    served = await serve({});
  });
  after(() => served.close());

  it('a streamed reply is sent whole and not stored: the retry runs again', async () => {
    const k = key();
    const first = await post(served, '/stream', k);
    assert.equal(first.status, 200);
    assert.equal(first.body, 'chunk by chunk');
    const second = await post(served, '/stream', k);
    assert.equal(second.body, 'chunk by chunk');
    assert.equal(second.replayed, false);
    assert.equal(served.runs.get(k), 2);
  });

  it('a scope that throws is a 500 that claims nothing: the same key then runs once', async () => {
    const k = key();
    const refused = await post(served, '/json', k, { 'x-tenant': 'throw' });
    assert.equal(refused.status, 500);
    assert.equal(served.runs.get(k), undefined);
    const first = await post(served, '/json', k);
    const again = await post(served, '/json', k);
    assert.deepEqual(
      [first.status, first.replayed, again.status, again.replayed],
      [200, false, 200, true],
    );
    assert.equal(served.runs.get(k), 1);
  });

  it('a store failure after the handler reaches onError, and the response is still sent', async () => {
    const failing = await serve({ store: failingCompletions() });
    const heard: Error[] = [];
    const withHandler = await serve({
      store: failingCompletions(),
      onError: (error) => heard.push(error),
    });
    try {
      const k = key();
      const answer = await post(withHandler, '/json', k);
      assert.equal(answer.status, 200);
      assert.equal(answer.body, '{"ok":true}');
      assert.equal(heard.length, 1);
      assert.ok(heard[0] instanceof IdempotencyStoreError, String(heard[0]));
      // Without onError, Fastify's logger hears it; the response is the same.
      const logged = await post(failing, '/json', key());
      assert.equal(logged.status, 200);
    } finally {
      await failing.close();
      await withHandler.close();
    }
  });

  it('an onError that throws fails the request instead of hanging it', async () => {
    const throwing = await serve({
      store: failingCompletions(),
      onError: () => {
        throw new Error('onError failed');
      },
    });
    try {
      const answer = await post(throwing, '/json', key());
      assert.equal(answer.status, 500);
    } finally {
      await throwing.close();
    }
  });

  it('a hijacked reply (onSend never runs) frees the key when the response ends', async () => {
    const k = key();
    const first = await post(served, '/hijack', k);
    assert.equal(first.body, 'written by hand');
    // Freed by onResponse, the key runs again at once; held, it would answer 409 for 30 s.
    const deadline = Date.now() + 3000;
    let again = await post(served, '/hijack', k);
    while (again.status === 409 && Date.now() < deadline) {
      await delay(20);
      again = await post(served, '/hijack', k);
    }
    assert.equal(again.status, 200);
    assert.equal(served.runs.get(k), 2);
  });

  it('a client that goes away mid-handler leaves the key free or completed, not held for its lease', async () => {
    const k = key();
    const { hostname, port } = new URL(served.url);
    const request = http.request({
      host: hostname,
      port,
      method: 'POST',
      path: '/slow',
      headers: { 'content-type': 'application/json', 'idempotency-key': k },
    });
    request.on('error', () => undefined);
    request.end('{"amount":10}');
    while (!served.gates.has(k)) await delay(5);
    request.destroy();
    await delay(20);
    served.gates.get(k)?.();
    // The lease is 30 s: a key left held would answer 409 long after this.
    const deadline = Date.now() + 3000;
    let last = await post(served, '/slow', k);
    while (last.status === 409 && Date.now() < deadline) {
      await delay(20);
      last = await post(served, '/slow', k);
    }
    assert.notEqual(last.status, 409, 'the key stayed held after its client went away');
  });
});

/** A memory store whose completions fail, as a store that died after the claim. */
function failingCompletions(): IdempotencyStore {
  const store = new MemoryIdempotencyStore();
  return {
    claim: (request) => store.claim(request),
    complete: () => Promise.reject(new Error('store down')),
    renew: (request) => store.renew(request),
    abandon: (request) => store.abandon(request),
    advance: (request) => store.advance(request),
  };
}
