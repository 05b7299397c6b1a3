/** node-redis clients through the adapters: the lock, its pub/sub wake-up, fencing and the idempotency store. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { createClient, type RedisClientType } from '@redis/client';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { StaleTokenError, withLock } from '../../packages/raceguard/src/core/lock.js';
import { fencedSet } from '../../packages/raceguard/src/redis/fenced-set.js';
import { RedisIdempotencyStore } from '../../packages/raceguard/src/redis/idempotency-store.js';
import {
  fromNodeRedis,
  subscriberFromNodeRedis,
} from '../../packages/raceguard/src/redis/node-redis.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';
import { storeContract } from '../idempotency/store-contract.js';

describe('node-redis', () => {
  let server: RedisServer;
  let client: RedisClientType;
  let subscriber: RedisClientType;
  before(async () => {
    server = await startRedisServer();
    client = createClient({ url: server.url });
    client.on('error', () => undefined);
    await client.connect();
    subscriber = client.duplicate();
    subscriber.on('error', () => undefined);
    await subscriber.connect();
  });
  after(async () => {
    await subscriber.quit();
    await client.quit();
    await server.stop();
  });

  it('RedisLock: 100 concurrent read-gap-write increments add exactly 100, tokens strictly increasing', async () => {
    const locks = new RedisLock({
      client: fromNodeRedis(client),
      subscriber: subscriberFromNodeRedis(subscriber),
      prefix: 'nr:',
    });
    await client.set('nr-counter', '0');
    const tokens: bigint[] = [];
    await Promise.all(
      Array.from({ length: 100 }, () =>
        withLock(
          locks,
          'counter',
          async (lock) => {
            tokens.push(lock.token);
            const value = Number(await client.get('nr-counter'));
            await delay(1);
            await client.set('nr-counter', String(value + 1));
          },
          { ttlMs: 5000, waitMs: 30_000 },
        ),
      ),
    );
    assert.equal(await client.get('nr-counter'), '100');
    assert.ok(tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as bigint)));
  });

  it('a waiter is woken by the release notification, not by polling', async () => {
    // A poll interval far longer than the test: only pub/sub can wake the waiter in time.
    const locks = new RedisLock({
      client: fromNodeRedis(client),
      subscriber: subscriberFromNodeRedis(subscriber),
      prefix: 'nr:',
      pollMs: 10_000,
    });
    const held = await locks.acquire('wake', { ttlMs: 30_000 });
    const started = performance.now();
    const waiting = locks.acquire('wake', { waitMs: 5000 });
    await delay(50);
    await held.release();
    const next = await waiting;
    assert.ok(performance.now() - started < 1000, 'woken within a second');
    await next.release();
  });

  it('falls back to EVAL after SCRIPT FLUSH, and fencedSet refuses a stale token', async () => {
    const adapted = fromNodeRedis(client);
    const locks = new RedisLock({ client: adapted, prefix: 'nr:' });
    await client.scriptFlush();
    const lock = await locks.acquire('fence', { ttlMs: 5000 });
    await fencedSet(adapted, 'nr-resource', 'new', lock.token);
    await assert.rejects(
      fencedSet(adapted, 'nr-resource', 'stale', lock.token - 1n),
      StaleTokenError,
    );
    await lock.release();
  });

  it('refuses things that are not node-redis clients', () => {
    assert.throws(() => fromNodeRedis({} as never), InvalidArgumentError);
    assert.throws(() => subscriberFromNodeRedis({} as never), InvalidArgumentError);
  });

  describe('RedisIdempotencyStore over node-redis', () => {
    storeContract(
      () => new RedisIdempotencyStore({ client: fromNodeRedis(client), prefix: 'nr-idem:' }),
    );
  });
});
