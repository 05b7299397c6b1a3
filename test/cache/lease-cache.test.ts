/**
 * The lease cache on a real Redis and PostgreSQL: the stale-set race
 * (a slow reader loads the old row, a writer updates it and invalidates,
 * the reader's fill lands afterwards) over 200 trials, beside the plain
 * cache-aside that keeps the stale value; the thundering herd across two
 * connections; fills that fail, crash or are overtaken; versioned
 * write-through; two-phase invalidation; bad input.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { Redis } from 'ioredis';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  CacheBackendError,
  CacheWaitTimeoutError,
  LeaseCache,
  type CacheEvent,
} from '../../packages/raceguard/src/cache/lease-cache.js';
import { gate } from '../helpers/gate.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import { startRedisServer } from '../../packages/raceguard/src/testing/redis.js';

describe('LeaseCache', () => {
  let redis: TestRedis;
  let db: TestDatabase;
  before(async () => {
    redis = await openTestRedis();
    db = await openTestDatabase(8);
    await db.pool.query('CREATE TABLE prices (id int PRIMARY KEY, price int NOT NULL)');
  });
  after(async () => {
    await redis.close();
    await db.close();
  });

  const priceOf = async (id: number): Promise<number> =>
    Number((await db.pool.query('SELECT price FROM prices WHERE id = $1', [id])).rows[0].price);

  /**
   * One trial of the stale-set race: the reader misses and loads the old
   * price, pauses; the writer updates the row and invalidates; the reader's
   * fill then lands (or not). Returns whether the cache serves a stale price
   * after the writer returned.
   */
  async function staleSetTrial(
    id: number,
    cache: {
      get(key: string, load: () => Promise<number>): Promise<number>;
      invalidate(key: string): Promise<unknown>;
    },
  ): Promise<boolean> {
    await db.pool.query(
      'INSERT INTO prices VALUES ($1, 100) ON CONFLICT (id) DO UPDATE SET price = 100',
      [id],
    );
    const key = `price:${id}`;
    await cache.invalidate(key);
    const slow = gate();
    const reader = cache.get(key, async () => {
      const old = await priceOf(id);
      await slow.wait(); // the slow reader: a GC pause, a busy event loop
      return old;
    });
    await slow.arrived;
    await db.pool.query('UPDATE prices SET price = price + 1 WHERE id = $1', [id]);
    await cache.invalidate(key);
    slow.open();
    await reader;
    const served = await cache.get(key, () => priceOf(id));
    return served !== (await priceOf(id));
  }

  it('the stale-set race: 200 trials, never a stale price after the writer returned', async () => {
    const cache = new LeaseCache({ client: redis.client, prefix: redis.prefix });
    let stale = 0;
    for (let trial = 0; trial < 200; trial++) if (await staleSetTrial(trial, cache)) stale++;
    assert.equal(stale, 0);
  });

  it('control: plain cache-aside (GET, miss, load, SET) keeps the stale price in every trial', async () => {
    const client = redis.client;
    const aside = {
      async get(key: string, load: () => Promise<number>) {
        const hit = await client.get(`${redis.prefix}aside:${key}`);
        if (hit !== null) return Number(hit);
        const value = await load();
        await client.set(`${redis.prefix}aside:${key}`, String(value), 'PX', 60_000);
        return value;
      },
      invalidate: (key: string) => client.del(`${redis.prefix}aside:${key}`),
    };
    let stale = 0;
    for (let trial = 0; trial < 200; trial++) if (await staleSetTrial(1000 + trial, aside)) stale++;
    assert.equal(stale, 200);
  });

  it('500 concurrent misses over two connections: the loader runs once, everyone gets its value', async () => {
    const prefix = `${redis.prefix}herd:`;
    const caches = [redis.client, redis.connect()].map(
      (client) => new LeaseCache({ client, prefix, pollMs: 5 }),
    );
    let loads = 0;
    const values = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        (caches[i % 2] as LeaseCache).get('hot', async () => {
          loads++;
          await new Promise((resolve) => setTimeout(resolve, 50));
          return { price: 42 };
        }),
      ),
    );
    assert.equal(loads, 1);
    assert.ok(values.every((v) => v.price === 42));
  });

  it('500 concurrent misses from two processes: the loader runs once', async () => {
    await db.pool.query(
      'CREATE TABLE herd_loads (n int NOT NULL); INSERT INTO herd_loads VALUES (0)',
    );
    const prefix = `${redis.prefix}herd2:`;
    const children = [1, 2].map(() =>
      fork(
        new URL('../helpers/cache-herd.ts', import.meta.url).pathname,
        [redis.server.url, prefix, 'hot'],
        {
          execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
          env: { ...process.env, PGOPTIONS: `-c search_path=${db.schema}` },
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      ),
    );
    await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))));
    const counts = children.map(
      (c) => new Promise<number>((resolve) => c.once('message', (n) => resolve(Number(n)))),
    );
    for (const c of children) c.send('go'); // both processes release their reads together
    assert.deepEqual(await Promise.all(counts), [250, 250]);
    const { rows } = await db.pool.query('SELECT n FROM herd_loads');
    assert.equal(rows[0].n, 1, 'one loader call for 500 reads across two processes');
  });

  it('with a subscriber, a waiter is woken the moment the fill lands; without, at its next poll', async () => {
    for (const [subscribed, fastest, slowest] of [
      [true, 0, 1000],
      [false, 1400, 5000],
    ] as const) {
      const prefix = `${redis.prefix}wake${String(subscribed)}:`;
      const cache = new LeaseCache({
        client: redis.client,
        prefix,
        pollMs: 1500,
        ...(subscribed && { subscriber: redis.connect() }),
      });
      const slow = gate();
      const filler = cache.get('k', async () => {
        await slow.wait();
        return 'filled';
      });
      await slow.arrived;
      const started = performance.now();
      const waiter = cache.get('k', async () => 'never');
      await new Promise((resolve) => setTimeout(resolve, 100));
      slow.open();
      assert.equal(await filler, 'filled');
      assert.equal(await waiter, 'filled');
      const waited = performance.now() - started;
      assert.ok(
        waited >= fastest && waited < slowest,
        `${subscribed ? 'subscribed' : 'polling'} waiter got the fill after ${Math.round(waited)} ms`,
      );
    }
  });

  it('a loader that throws frees the key for the next caller; a filler that never returns blocks only for its lease', async () => {
    const cache = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}fail:`,
      leaseMs: 300,
      waitMs: 100,
      pollMs: 5,
    });
    await assert.rejects(
      cache.get('k', async () => {
        throw new Error('database down');
      }),
      /database down/,
    );
    assert.equal(await cache.get('k', async () => 7), 7, 'the next caller filled');
    // A filler that crashed: its lease stands until it expires.
    const hung = cache.get('crash', () => new Promise<number>(() => undefined));
    void hung;
    await new Promise((resolve) => setTimeout(resolve, 20));
    await assert.rejects(
      cache.get('crash', async () => 1),
      CacheWaitTimeoutError,
    );
    await new Promise((resolve) => setTimeout(resolve, 320));
    assert.equal(await cache.get('crash', async () => 2), 2, 'filled once the lease ran out');
  });

  it('waitMs 0 does not wait for a fill in flight (as a lock tries once), and a failed fill still reaches nobody twice', async () => {
    const cache = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}nowait:`,
      waitMs: 0,
    });
    let open: () => void = () => undefined;
    const filler = cache.get(
      'k',
      () => new Promise<number>((resolve) => (open = () => resolve(1))),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    const startedAt = performance.now();
    await assert.rejects(
      cache.get('k', async () => 2),
      CacheWaitTimeoutError,
    );
    assert.ok(performance.now() - startedAt < 1000, 'it did not wait');
    open();
    assert.equal(await filler, 1);
    await assert.rejects(
      cache.get('broken', async () => {
        throw new Error('database down');
      }),
      /database down/,
    );
    assert.equal(await cache.get('broken', async () => 3), 3, 'the next caller filled');
    await cache.close();
  });

  it('versioned write-through never moves backwards and voids a fill in flight', async () => {
    const events: CacheEvent[] = [];
    const cache = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}ver:`,
      onEvent: (e) => events.push(e),
    });
    assert.equal(await cache.write('p', { price: 2 }, { version: 2 }), true);
    assert.equal(
      await cache.write('p', { price: 1 }, { version: 1 }),
      false,
      'an older writer lost',
    );
    assert.deepEqual(await cache.get('p', async () => ({ price: -1 })), { price: 2 });
    await cache.invalidate('q');
    const slow = gate();
    const reader = cache.get('q', async () => {
      await slow.wait();
      return { price: 'old' };
    });
    await slow.arrived;
    assert.equal(await cache.write('q', { price: 'new' }, { version: 5n }), true);
    slow.open();
    assert.deepEqual(await reader, { price: 'old' }, 'the reader gets what it loaded');
    assert.deepEqual(await cache.get('q', async () => ({ price: 'reloaded' })), { price: 'new' });
    assert.ok(events.some((e) => e.type === 'fill-refused' && e.key === 'q'));
  });

  it('two-phase invalidation: marked stale, one caller refreshes while the others get the old value', async () => {
    const cache = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}two:`,
      staleMs: 5000,
    });
    await cache.get('p', async () => 'v1');
    await cache.invalidate('p', { mark: true });
    const slow = gate();
    let loads = 0;
    const refresher = cache.get('p', async () => {
      loads++;
      await slow.wait();
      return 'v2';
    });
    await slow.arrived;
    const others = await Promise.all([1, 2, 3].map(() => cache.get('p', async () => 'never')));
    assert.deepEqual(others, ['v1', 'v1', 'v1']);
    slow.open();
    assert.equal(await refresher, 'v2');
    assert.equal(await cache.get('p', async () => 'never'), 'v2');
    assert.equal(loads, 1);
  });

  it('bad input is refused with a typed error and nothing is cached', async () => {
    const cache = new LeaseCache({ client: redis.client, prefix: `${redis.prefix}bad:` });
    await assert.rejects(
      cache.get('', async () => 1),
      InvalidArgumentError,
    );
    await assert.rejects(
      cache.get('x'.repeat(2000), async () => 1),
      /at most 1024 bytes/,
    );
    await assert.rejects(
      cache.get('u', async () => undefined),
      /undefined cannot be cached/,
    );
    await assert.rejects(
      cache.get('c', async () => 10n),
      /must be serialisable/,
    );
    assert.equal(await cache.get('u', async () => 'loaded'), 'loaded', 'nothing was cached for u');
    await assert.rejects(cache.write('w', 1, { version: -1 }), /options\.version/);
    assert.throws(() => new LeaseCache({ client: redis.client, ttlMs: 0 }), /options\.ttlMs/);
    assert.throws(
      () => new LeaseCache({ client: redis.client, ttl: 5 } as never),
      /options\.ttl must be one of/,
    );
    assert.throws(() => new LeaseCache({ client: {} as never }), /options\.client/);
  });

  it('a pluggable serializer keeps what JSON would lose; null is cached as a value (negative caching)', async () => {
    const dates = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}ser:`,
      serializer: {
        serialize: (v) => JSON.stringify({ at: (v as Date).toISOString() }),
        deserialize: (s) => new Date((JSON.parse(s) as { at: string }).at),
      },
    });
    const at = new Date('2026-12-01T12:00:00Z');
    await dates.get('d', async () => at);
    const read = await dates.get('d', async () => new Date(0));
    assert.ok(read instanceof Date && read.getTime() === at.getTime());
    const cache = new LeaseCache({ client: redis.client, prefix: `${redis.prefix}neg:` });
    let loads = 0;
    for (let i = 0; i < 3; i++) {
      assert.equal(
        await cache.get('missing-product', async () => {
          loads++;
          return null;
        }),
        null,
      );
    }
    assert.equal(loads, 1, 'a miss in the database is cached too');
    assert.throws(
      () => new LeaseCache({ client: redis.client, serializer: { serialize: String } as never }),
      /options\.serializer\.deserialize must be a function/,
    );
  });

  it('a Redis that is down: fail-closed rejects with CacheBackendError and the cause, fail-open serves the loader', async () => {
    const down = redis.connect();
    down.disconnect();
    const closed = new LeaseCache({
      client: down,
      prefix: `${redis.prefix}down:`,
      failOpen: false,
    });
    const error = await closed.get('k', async () => 1).catch((e: unknown) => e);
    assert.ok(error instanceof CacheBackendError, String(error));
    assert.equal(error.code, 'RACEGUARD_CACHE_BACKEND');
    assert.ok(error.cause instanceof Error);
    const events: CacheEvent[] = [];
    const open = new LeaseCache({
      client: down,
      prefix: `${redis.prefix}down:`,
      onEvent: (e) => events.push(e),
    });
    assert.equal(await open.get('k', async () => 'from the database'), 'from the database');
    assert.ok(events.some((e) => e.type === 'backend-error'));
  });

  it('Redis killed mid-fill and restarted: reads are bounded, served by the loader meanwhile, and nothing stale afterwards', async () => {
    const own = await startRedisServer();
    const client = new Redis(own.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    client.on('error', () => undefined);
    try {
      await db.pool.query(
        'INSERT INTO prices VALUES (9000, 100) ON CONFLICT (id) DO UPDATE SET price = 100',
      );
      const cache = new LeaseCache({ client, prefix: 'restart:', callTimeoutMs: 300 });
      const slow = gate();
      const reader = cache.get('price:9000', async () => {
        const old = await priceOf(9000);
        await slow.wait();
        return old;
      });
      await slow.arrived;
      await own.stop(); // Redis gone while the reader loads; the writer cannot invalidate
      await db.pool.query('UPDATE prices SET price = 101 WHERE id = 9000');
      slow.open();
      assert.equal(
        await reader,
        100,
        'the reader gets what it loaded (its fill failed: not cached)',
      );
      const started = performance.now();
      assert.equal(
        await cache.get('price:9000', () => priceOf(9000)),
        101,
        'fail-open: the loader',
      );
      assert.ok(performance.now() - started < 1500, 'bounded by callTimeoutMs, not the reconnect');
      const again = await startRedisServer({ port: own.port });
      try {
        await client.ping();
        assert.equal(await cache.get('price:9000', () => priceOf(9000)), 101);
        assert.equal(
          await cache.get('price:9000', async () => -1),
          101,
          'filled with the new price',
        );
      } finally {
        await again.stop();
      }
    } finally {
      client.disconnect();
      await own.stop();
    }
  });

  it('a filler SIGKILLed while holding its lease: the next caller fills once the lease runs out', async () => {
    const prefix = `${redis.prefix}killed:`;
    const child = fork(
      new URL('../helpers/cache-filler.ts', import.meta.url).pathname,
      [redis.server.url, prefix, 'k'],
      {
        execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    child.kill('SIGKILL');
    const cache = new LeaseCache({ client: redis.client, prefix, waitMs: 3000, pollMs: 10 });
    const started = performance.now();
    let loads = 0;
    assert.equal(
      await cache.get('k', async () => {
        loads++;
        return 'filled';
      }),
      'filled',
    );
    assert.equal(loads, 1);
    assert.ok(performance.now() - started < 2000, 'waited for the 500 ms lease, not longer');
  });
});
