import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { IdempotencyStoreError } from '../../packages/raceguard/src/idempotency/errors.js';
import { idempotent } from '../../packages/raceguard/src/idempotency/idempotent.js';
import { RedisIdempotencyStore } from '../../packages/raceguard/src/redis/idempotency-store.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import { storeContract } from './store-contract.js';

describe('RedisIdempotencyStore', () => {
  let redis: TestRedis;
  let store: RedisIdempotencyStore;

  before(async () => {
    redis = await openTestRedis();
    store = new RedisIdempotencyStore({ client: redis.client });
  });
  after(() => redis.close());

  storeContract(
    () => store,
    (extra) => new RedisIdempotencyStore({ client: redis.client, ...extra }),
  );

  it('records carry the TTL on the server', async () => {
    await idempotent(store, { scope: 's', key: 'ttl', ttlMs: 60_000 }, () => 1);
    const keys = await redis.client.keys('raceguard:idem:*');
    assert.equal(keys.filter((k) => !k.endsWith(':lease')).length > 0, true);
    for (const key of keys) {
      const ttl = await redis.client.pttl(key);
      assert.ok(ttl > 0, `${key} has no expiry`);
    }
  });

  it('refuses a non-client', () => {
    assert.throws(() => new RedisIdempotencyStore({ client: {} as Redis }), InvalidArgumentError);
  });

  it('a Redis that is unreachable fails closed with the cause attached', async () => {
    const dead = new Redis({
      port: 1,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    dead.on('error', () => undefined);
    let runs = 0;
    const error = await idempotent(
      new RedisIdempotencyStore({ client: dead }),
      { scope: 's', key: 'k' },
      () => (runs += 1),
    ).catch((e: unknown) => e);
    assert.ok(error instanceof IdempotencyStoreError, String(error));
    assert.equal(runs, 0);
    dead.disconnect();
  });
});
