/**
 * Idempotency under a failing store: every store call is bounded, so a
 * Redis that was killed or paused, or a PostgreSQL whose table is locked,
 * costs a request at most `callTimeoutMs`, and the layer fails closed.
 * Also: options checked at start-up, and which statuses are stored.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { IdempotencyStoreError } from '../../packages/raceguard/src/idempotency/errors.js';
import {
  claimIdempotency,
  idempotent,
} from '../../packages/raceguard/src/idempotency/idempotent.js';
import { MemoryIdempotencyStore } from '../../packages/raceguard/src/idempotency/memory-store.js';
import { expressIdempotency } from '../../packages/raceguard/src/http/index.js';
import { fastifyIdempotency } from '../../packages/raceguard/src/http/fastify.js';
import { isFinalOutcome } from '../../packages/raceguard/src/http/policy.js';
import {
  PostgresIdempotencyStore,
  createIdempotencyTable,
} from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { RedisIdempotencyStore } from '../../packages/raceguard/src/redis/idempotency-store.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

const TIMEOUT_MS = 300;

async function elapsed<T>(work: Promise<T>): Promise<{ ms: number; error: unknown }> {
  const started = performance.now();
  try {
    await work;
    return { ms: performance.now() - started, error: undefined };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

describe('idempotency with a store that fails', () => {
  let redis: RedisServer;
  let db: TestDatabase;
  before(async () => {
    [redis, db] = await Promise.all([startRedisServer(), openTestDatabase(5)]);
    await createIdempotencyTable(db.pool);
  });
  after(async () => {
    await redis.stop();
    await db.close();
  });

  it('a paused Redis (SIGSTOP) with a default client: claims fail closed within callTimeoutMs', async () => {
    // The README's client: default options, offline queue and retries on.
    const client = new Redis(redis.url);
    client.on('error', () => undefined);
    await client.ping();
    const store = new RedisIdempotencyStore({ client });
    redis.process.kill('SIGSTOP');
    try {
      const claim = await elapsed(
        claimIdempotency(store, { scope: 's', key: 'paused', callTimeoutMs: TIMEOUT_MS }),
      );
      assert.ok(claim.error instanceof IdempotencyStoreError, String(claim.error));
      assert.ok(claim.ms < TIMEOUT_MS + 700, `answered after ${claim.ms.toFixed(0)} ms`);
    } finally {
      redis.process.kill('SIGCONT');
    }
    // The claim granted after the timeout is given back: the retry runs at once.
    let runs = 0;
    const retry = await idempotent(
      store,
      { scope: 's', key: 'paused', waitMs: 2000, concurrent: 'wait' },
      () => ++runs,
    );
    assert.deepEqual([retry.replayed, runs], [false, 1]);
    client.disconnect();
  });

  it('a Redis killed mid-request: the finished response is not held for minutes', async () => {
    const server = await startRedisServer();
    const client = new Redis(server.url);
    client.on('error', () => undefined);
    await client.ping();
    const store = new RedisIdempotencyStore({ client });
    const app = Fastify();
    await app.register(
      fastifyIdempotency({ store, scope: () => 'tenant', callTimeoutMs: TIMEOUT_MS }),
    );
    app.post('/orders', async (_request, reply) => {
      // The store dies while the handler runs.
      const exited = once(server.process, 'exit');
      server.process.kill('SIGKILL');
      await exited;
      return reply.code(201).send({ order: 1 });
    });
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const first = await elapsed(
        fetch(`${address}/orders`, {
          method: 'POST',
          headers: { 'idempotency-key': '"k1"', 'content-type': 'application/json' },
          body: '{}',
        }).then(async (r) => assert.equal(r.status, 201, await r.text())),
      );
      assert.equal(first.error, undefined);
      assert.ok(first.ms < 3 * TIMEOUT_MS + 1000, `201 sent after ${first.ms.toFixed(0)} ms`);
      // A request while the store is down: 503 within the limit, the handler never runs.
      const second = await elapsed(
        fetch(`${address}/orders`, {
          method: 'POST',
          headers: { 'idempotency-key': '"k2"', 'content-type': 'application/json' },
          body: '{}',
        }).then((r) => assert.equal(r.status, 503)),
      );
      assert.equal(second.error, undefined);
      assert.ok(second.ms < TIMEOUT_MS + 1000, `503 after ${second.ms.toFixed(0)} ms`);
    } finally {
      client.disconnect();
      await app.close();
      await server.stop();
    }
  });

  it('a blocked PostgreSQL (table locked by another transaction): claims fail closed within the limit', async () => {
    const store = new PostgresIdempotencyStore({ client: db.pool });
    const blocker = await db.pool.connect();
    await blocker.query('BEGIN; LOCK TABLE raceguard_idempotency IN ACCESS EXCLUSIVE MODE');
    try {
      const claim = await elapsed(
        claimIdempotency(store, { scope: 's', key: 'blocked', callTimeoutMs: TIMEOUT_MS }),
      );
      assert.ok(claim.error instanceof IdempotencyStoreError, String(claim.error));
      assert.ok(claim.ms < TIMEOUT_MS + 700, `answered after ${claim.ms.toFixed(0)} ms`);
    } finally {
      await blocker.query('COMMIT');
      blocker.release();
    }
  });
});

describe('idempotency options and stored statuses', () => {
  it('a bad option set fails when the middleware is created, not with a 500 on every request', () => {
    const store = new MemoryIdempotencyStore();
    assert.throws(
      () => expressIdempotency({ store, scope: () => 's', ttlMs: 1000 }),
      (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'options.ttlMs',
    );
    assert.throws(
      () => fastifyIdempotency({ store, scope: () => 's', ttlMs: 1000 }),
      (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'options.ttlMs',
    );
    // A misspelt option, or the old name of failOpen, is refused rather than ignored.
    for (const [option, says] of [
      ['storeTimoutMs', /one of the options/],
      ['storeFailure', /called failOpen/],
    ] as const) {
      assert.throws(
        () => expressIdempotency({ store, scope: () => 's', [option]: 'open' }),
        (e: unknown) =>
          e instanceof InvalidArgumentError &&
          e.argument === `options.${option}` &&
          says.test(e.message),
      );
    }
    // waitMs 0: do not wait (as a lock's waitMs 0 tries once).
    assert.doesNotThrow(() => expressIdempotency({ store, scope: () => 's', waitMs: 0 }));
  });

  it('stores 2xx and final 4xx; not 3xx, 401, 408, 409, 425 or 429, which a retry must run again', async () => {
    for (const status of [200, 201, 204, 400, 404, 410, 422])
      assert.equal(isFinalOutcome(status), true);
    for (const status of [301, 303, 401, 408, 409, 425, 429])
      assert.equal(isFinalOutcome(status), false);
    // Over HTTP: a 429 is not replayed, the retry runs the handler again.
    const store = new MemoryIdempotencyStore();
    const app = express();
    app.use(express.json());
    app.use(expressIdempotency({ store, scope: () => 's' }));
    let runs = 0;
    app.post('/limited', (_request, response) => {
      runs += 1;
      response.status(runs === 1 ? 429 : 201).json({ runs });
    });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    try {
      const send = () =>
        fetch(`http://127.0.0.1:${port}/limited`, {
          method: 'POST',
          headers: { 'idempotency-key': '"same"', 'content-type': 'application/json' },
          body: '{}',
        });
      assert.equal((await send()).status, 429);
      assert.equal((await send()).status, 201);
      const replay = await send();
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.equal(runs, 2);
    } finally {
      server.close();
    }
  });
});

describe('completion after a lost reply', () => {
  it('a retried complete by the same execution succeeds when the first attempt had landed', async () => {
    const real = new MemoryIdempotencyStore();
    let completes = 0;
    // The transport drops the first completion's reply after the store applied it.
    const lossy = {
      claim: real.claim.bind(real),
      renew: real.renew.bind(real),
      abandon: real.abandon.bind(real),
      advance: real.advance.bind(real),
      complete: async (request: Parameters<MemoryIdempotencyStore['complete']>[0]) => {
        const applied = await real.complete(request);
        completes += 1;
        if (completes === 1) throw new Error('connection reset before the reply');
        return applied;
      },
    };
    const first = await idempotent(lossy, { scope: 's', key: 'lost-reply' }, () => 'receipt');
    assert.deepEqual([first.value, first.replayed, completes], ['receipt', false, 2]);
    // The stored result is the one replayed.
    const again = await idempotent(real, { scope: 's', key: 'lost-reply' }, () => 'other');
    assert.deepEqual([again.value, again.replayed], ['receipt', true]);
  });
});
