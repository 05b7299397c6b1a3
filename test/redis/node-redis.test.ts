/** node-redis clients through the adapters: the lock, its pub/sub wake-up, fencing and the idempotency store. */
import { assertWokenByRelease } from '../helpers/contend.js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { createClient, type RedisClientType } from '@redis/client';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { LeaseCache, type CacheEvent } from '../../packages/raceguard/src/cache/lease-cache.js';
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
    await assertWokenByRelease(locks, 'wake');
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

  it('LeaseCache with an in-process tier: the bus keeps it coherent; a lost subscriber empties it until resubscribed', async () => {
    const own = client.duplicate();
    own.on('error', () => undefined);
    await own.connect();
    const events: CacheEvent[] = [];
    const states: string[] = [];
    // Resolves once the tier has reported `state` more than `seen` times.
    const reported = (state: 'up' | 'down', seen: number) =>
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (states.filter((s) => s === state).length > seen) {
            clearInterval(check);
            resolve();
          }
        }, 5);
      });
    const upFirst = reported('up', 0);
    const cache = new LeaseCache({
      client: fromNodeRedis(client),
      subscriber: subscriberFromNodeRedis(own),
      prefix: 'nrc:',
      local: {},
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'local-tier') states.push(e.state);
      },
    });
    const writer = new LeaseCache({ client: fromNodeRedis(client), prefix: 'nrc:' });
    await upFirst;
    assert.equal(await cache.get('k', async () => 'v1'), 'v1');
    assert.equal(await cache.get('k', async () => 'never'), 'v1');
    assert.ok(events.some((e) => e.type === 'hit' && e.tier === 'local'));
    await writer.invalidate('k');
    // Until the bus message is in (each turn yields to I/O: local hits alone never would).
    const until = async (old: string, next: string): Promise<string> => {
      let value = old;
      while (value === old) {
        await new Promise(setImmediate);
        value = await cache.get('k', async () => next);
      }
      return value;
    };
    let value = await until('v1', 'v2');
    assert.equal(value, 'v2', 'the bus message dropped the local copy');
    const down = reported('down', 0);
    await client.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
    await down;
    events.length = 0;
    assert.equal(await cache.get('k', async () => 'never'), 'v2');
    assert.ok(
      events.some((e) => e.type === 'hit' && e.tier === 'redis'),
      'the tier forgot its copy when the bus went down',
    );
    await reported('up', 1);
    await writer.invalidate('k');
    value = await until('v2', 'v3');
    assert.equal(value, 'v3', 'the resubscribed bus is heard');
    await cache.close();
    await own.quit();
  });

  it('refuses things that are not node-redis clients', () => {
    assert.throws(() => fromNodeRedis({} as never), InvalidArgumentError);
    assert.throws(() => subscriberFromNodeRedis({} as never), InvalidArgumentError);
  });

  describe('RedisIdempotencyStore over node-redis', () => {
    storeContract(
      () => new RedisIdempotencyStore({ client: fromNodeRedis(client), prefix: 'nr-idem:' }),
      (extra) => new RedisIdempotencyStore({ client: fromNodeRedis(client), ...extra }),
    );
  });
});
