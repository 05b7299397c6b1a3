/**
 * The lease cache's promises under the faults found from outside (issue 27,
 * defect 8), on a real Redis: a two-phase invalidation serves the old value
 * no longer than `staleMs` however long the refresh takes; an in-process
 * tier whose bus goes silent without closing stops serving within its trust
 * window; a herd behind a loader that always fails gets the loader's error,
 * not one load after another and a wait timeout; `get` returns its value
 * while the subscriber connection is stalled.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { after, before, describe, it } from 'node:test';
import { BUS_TRUST_MS } from '../../packages/raceguard/src/cache/local-tier.js';
import {
  CacheWaitTimeoutError,
  LeaseCache,
  type CacheEvent,
} from '../../packages/raceguard/src/cache/lease-cache.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import { silenceableProxy } from '../helpers/silent-proxy.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('LeaseCache regressions', { timeout: 120_000 }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await openTestRedis();
  });
  after(() => redis.close());

  it('a two-phase invalidation serves the old value at most staleMs, however long the refresh takes', async () => {
    const cache = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}twophase:`,
      ttlMs: 60_000,
      staleMs: 300,
      leaseMs: 10_000,
    });
    // Readers that do not wait for the refresh: the stale copy, or a wait timeout.
    const reader = new LeaseCache({
      client: redis.client,
      prefix: `${redis.prefix}twophase:`,
      ttlMs: 60_000,
      staleMs: 300,
      waitMs: 50,
      pollMs: 5,
    });
    assert.equal(await cache.get('k', async () => 'old'), 'old');
    await cache.invalidate('k', { mark: true });
    const marked = performance.now();
    // One caller refreshes, slowly (the loader takes 2 s); the others read meanwhile.
    let release: () => void = () => undefined;
    const slow = cache.get(
      'k',
      () => new Promise<string>((resolve) => (release = () => resolve('new'))),
    );
    const seen: { at: number; value: string }[] = [];
    while (performance.now() - marked < 1200) {
      const value = await reader
        .get('k', async () => 'never')
        .catch((error: unknown) =>
          error instanceof CacheWaitTimeoutError ? 'waiting' : Promise.reject(error as Error),
        );
      seen.push({ at: performance.now() - marked, value: String(value) });
      await sleep(20);
    }
    release();
    assert.equal(await slow, 'new');
    const lateOld = seen.filter((s) => s.value === 'old' && s.at > 300 + 50);
    assert.deepEqual(
      lateOld,
      [],
      `old value served ${lateOld.at(-1)?.at.toFixed(0)} ms after the invalidation (staleMs 300)`,
    );
    assert.ok(
      seen.some((s) => s.value === 'old'),
      'control: the stale copy was served at first',
    );
  });

  it('an in-process tier whose bus goes silent without closing stops serving its copies', async () => {
    const proxy = await silenceableProxy(redis.server.port);
    const subscriber = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 });
    subscriber.on('error', () => undefined);
    const prefix = `${redis.prefix}silent:`;
    const events: CacheEvent[] = [];
    let up: () => void = () => undefined;
    const isUp = new Promise<void>((resolve) => (up = resolve));
    const a = new LeaseCache({
      client: redis.connect(),
      subscriber,
      prefix,
      local: {},
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'local-tier' && e.state === 'up') up();
      },
    });
    const b = new LeaseCache({ client: redis.connect(), prefix });
    try {
      await isUp;
      assert.equal(await a.get('k', async () => 'v1'), 'v1');
      assert.equal(await a.get('k', async () => 'never'), 'v1');
      proxy.silence();
      assert.equal(await b.write('k', 'v2', { version: 2 }), true); // A's bus never hears it
      await sleep(BUS_TRUST_MS + 150);
      assert.equal(
        await a.get('k', async () => 'never'),
        'v2',
        'served from memory past the trust window',
      );
    } finally {
      proxy.resume();
      await a.close();
      subscriber.disconnect();
      proxy.close();
    }
  });

  it('a herd behind a loader that always fails gets its error, and the loader runs once per fill, not once per caller', async () => {
    const prefix = `${redis.prefix}herd:`;
    const clients = [redis.connect(), redis.connect()];
    const caches = clients.map(
      (client) => new LeaseCache({ client, prefix, pollMs: 5, waitMs: 3000 }),
    );
    let calls = 0;
    const loader = async (): Promise<string> => {
      calls++;
      await sleep(30);
      throw new Error('database down');
    };
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (caches[i % 2] as LeaseCache).get('k', loader).then(
          () => 'value',
          (error: unknown) =>
            error instanceof CacheWaitTimeoutError ? 'timeout' : (error as Error).message,
        ),
      ),
    );
    assert.equal(outcomes.filter((o) => o === 'timeout').length, 0);
    assert.ok(
      outcomes.every((o) => /database down/.test(o)),
      outcomes.find((o) => !/database down/.test(o)),
    );
    assert.ok(calls <= 4, `the loader ran ${calls} times for 200 callers`);
  });

  it('get returns its value while the subscriber connection is stalled', async () => {
    const proxy = await silenceableProxy(redis.server.port);
    const subscriber = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 });
    subscriber.on('error', () => undefined);
    await subscriber.ping();
    const prefix = `${redis.prefix}stalled-sub:`;
    const waiter = new LeaseCache({ client: redis.connect(), subscriber, prefix, pollMs: 20 });
    const filler = new LeaseCache({ client: redis.connect(), prefix });
    try {
      let release: () => void = () => undefined;
      let loading: () => void = () => undefined;
      const loaderStarted = new Promise<void>((resolve) => (loading = resolve));
      const filling = filler.get('k', () => {
        loading(); // the filler holds the fill lease: the waiter will wait, not fill
        return new Promise<string>((resolve) => (release = () => resolve('v')));
      });
      await loaderStarted;
      const waiting = waiter.get('k', async () => 'never'); // subscribes, then waits for the fill
      await sleep(50);
      proxy.silence(); // its UNSUBSCRIBE will hang
      release();
      assert.equal(await filling, 'v');
      const started = performance.now();
      assert.equal(await waiting, 'v');
      assert.ok(performance.now() - started < 1000);
    } finally {
      proxy.resume();
      subscriber.disconnect();
      proxy.close();
    }
  });
});
