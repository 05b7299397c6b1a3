import { assertWokenByRelease } from '../helpers/contend.js';
import { once } from 'node:events';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockLostError,
  LockNotOwnerError,
  StaleTokenError,
  withLock,
} from '../../packages/raceguard/src/core/lock.js';
import { fencedSet } from '../../packages/raceguard/src/redis/fenced-set.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { startRedisServer } from '../../packages/raceguard/src/testing/redis.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

describe('RedisLock', () => {
  let redis: TestRedis;
  before(async () => {
    redis = await openTestRedis();
  });
  after(() => redis.close());

  it('100 concurrent read-gap-write increments under the lock add exactly 100, tokens in grant order', async () => {
    const locks = redis.newLock();
    await redis.client.set('counter', '0');
    const tokens: bigint[] = [];
    await Promise.all(
      Array.from({ length: 100 }, () =>
        withLock(
          locks,
          'counter',
          async (lock) => {
            tokens.push(lock.token);
            const value = Number(await redis.client.get('counter'));
            await delay(1);
            await redis.client.set('counter', String(value + 1));
          },
          { ttlMs: 5000, waitMs: 30_000 },
        ),
      ),
    );
    assert.equal(await redis.client.get('counter'), '100');
    assert.ok(
      tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as bigint)),
      'tokens strictly increase',
    );
  });

  it('tryAcquire declines a held lock; acquire times out with a typed error', async () => {
    const locks = redis.newLock();
    const held = await locks.acquire('busy', { ttlMs: 5000 });
    assert.equal(await locks.tryAcquire('busy'), undefined);
    await assert.rejects(locks.acquire('busy', { waitMs: 50 }), LockAcquireTimeoutError);
    await held.release();
    const next = await locks.tryAcquire('busy');
    assert.ok(next && next.token > held.token);
    await next.release();
  });

  it('a waiter is woken by the release notification, not by polling', async () => {
    await assertWokenByRelease(redis.newLock({ pollMs: 5000 }), 'wake');
  });

  it('an expired holder learns it (signal, onLost), cannot extend, and its release spares the new holder', async () => {
    const locks = redis.newLock();
    const lost: LockLostError[] = [];
    const a = await locks.acquire('lease', { ttlMs: 100, onLost: (e) => lost.push(e) });
    assert.ok(a.validUntil < performance.now() + 100);
    const b = await locks.acquire('lease', { ttlMs: 5000, waitMs: 2000 });
    assert.ok(b.token > a.token);
    assert.equal(a.signal.aborted, true);
    assert.equal(lost[0]?.reason, 'expired');
    await assert.rejects(a.extend(), LockNotOwnerError);
    await a.release();
    assert.equal(await locks.tryAcquire('lease'), undefined, 'the stale release must not free b');
    await b.release();
  });

  it('the watchdog keeps the lease alive past its ttl and stops at release', async () => {
    const locks = redis.newLock();
    const held = await locks.acquire('watchdog', { ttlMs: 600, autoExtend: true });
    for (let i = 0; i < 5; i++) {
      await delay(250);
      assert.equal(
        await locks.tryAcquire('watchdog'),
        undefined,
        `still held after ${(i + 1) * 250}ms`,
      );
    }
    assert.equal(held.signal.aborted, false);
    await held.release();
    const after = await locks.tryAcquire('watchdog');
    assert.ok(after);
    await after.release();
  });

  it('an event-loop stall past the lease marks the lock as possibly lost', async () => {
    const locks = redis.newLock();
    const lost: LockLostError[] = [];
    const held = await locks.acquire('stall', {
      ttlMs: 100,
      autoExtend: true,
      onLost: (e) => lost.push(e),
    });
    const until = performance.now() + 250;
    while (performance.now() < until) {
      // block the event loop, as a long synchronous task or a GC pause would
    }
    // The renewal due during the stall runs now, finds the lease over, and reports it.
    if (!held.signal.aborted) await once(held.signal, 'abort');
    assert.equal(held.signal.aborted, true);
    assert.equal(lost[0]?.reason, 'stall');
    await held.release();
  });

  it('extend renews; abort while waiting rejects and leaves nothing held', async () => {
    const locks = redis.newLock();
    const held = await locks.acquire('ext', { ttlMs: 100 });
    await held.extend(5000);
    // Past the first lease: still held, by the server's account too.
    assert.ok(held.validUntil > performance.now() + 1000);
    assert.ok(Number(await redis.client.pttl(`${redis.prefix}lock:{ext}`)) > 1000);
    assert.equal(held.signal.aborted, false);
    const controller = new AbortController();
    const waiting = locks.acquire('ext', { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('shutdown')), 20);
    await assert.rejects(waiting, AbortedError);
    await held.release();
    const free = await locks.tryAcquire('ext');
    assert.ok(free);
    await free.release();
  });

  it('falls back to EVAL when the server lost its script cache', async () => {
    const locks = redis.newLock();
    await redis.client.script('FLUSH');
    const held = await locks.acquire('noscript', { ttlMs: 1000 });
    await redis.client.script('FLUSH');
    await held.release();
    assert.ok(await locks.tryAcquire('noscript').then((h) => h?.release().then(() => true)));
  });

  it('fencedSet refuses a stale token', async () => {
    await fencedSet(redis.client, 'doc', 'v5', 5n);
    await fencedSet(redis.client, 'doc', 'v5-again', 5n);
    await assert.rejects(
      fencedSet(redis.client, 'doc', 'v4', 4n),
      (e) => e instanceof StaleTokenError && e.currentToken === 5n,
    );
    await fencedSet(redis.client, 'doc', 'v6', 6n);
    assert.equal(await redis.client.hget('doc', 'value'), 'v6');
  });

  it('fenceCounter "shared" keeps one counter key however many names, and tokens still rise per name', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `order:${i}`);
    for (const [prefix, fenceCounter, counters] of [
      ['fence-shared:', 'shared', 1],
      ['fence-per-key:', 'per-key', names.length],
    ] as const) {
      const locks = redis.newLock({ prefix, fenceCounter });
      const tokens = new Map<string, bigint[]>();
      await Promise.all(
        names.map(async (name) => {
          for (let round = 0; round < 3; round++) {
            await withLock(
              locks,
              name,
              (lock) => {
                tokens.set(name, [...(tokens.get(name) ?? []), lock.token]);
                return Promise.resolve();
              },
              { ttlMs: 5000, waitMs: 5000 },
            );
          }
        }),
      );
      for (const [name, list] of tokens) {
        assert.equal(list.length, 3);
        assert.ok(
          list.every((t, i) => i === 0 || t > (list[i - 1] as bigint)),
          `${fenceCounter}: tokens of ${name} rise`,
        );
      }
      assert.equal((await redis.client.keys(`${prefix}fence*`)).length, counters, fenceCounter);
      if (fenceCounter === 'shared') {
        const all = [...tokens.values()].flat();
        assert.equal(new Set(all).size, all.length, 'every grant has a token of its own');
      }
    }
  });

  it('rejects bad input', async () => {
    const locks = redis.newLock();
    await assert.rejects(locks.acquire(''), InvalidArgumentError);
    assert.throws(
      () => redis.newLock({ fenceCounter: 'global' as never }),
      /options\.fenceCounter.*"per-key", "shared"/,
    );
    await assert.rejects(locks.acquire('k', { ttlMs: -1 }), /ttlMs/);
    assert.throws(() => new RedisLock({ client: {} as never }), /eval and evalsha/);
    await assert.rejects(fencedSet(redis.client, 'doc', 'x', -1n), InvalidArgumentError);
  });
});

it('a Redis that is down surfaces as LockBackendError with the cause', async () => {
  const server = await startRedisServer();
  const client = new Redis(server.url, {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    lazyConnect: true,
  });
  client.on('error', () => undefined);
  await client.connect();
  await server.stop();
  await delay(50);
  const locks = new RedisLock({ client });
  const error = await locks.acquire('k', { waitMs: 0 }).catch((e: unknown) => e);
  assert.ok(error instanceof LockBackendError, String(error));
  assert.ok(error.cause instanceof Error);
  client.disconnect();
});
