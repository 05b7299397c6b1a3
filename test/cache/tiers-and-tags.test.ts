/**
 * The lease cache's in-process tier and its tags, on a real Redis and
 * PostgreSQL: two instances kept coherent by the pub/sub bus; the stale-set
 * race through the local tier over 200 trials; a bus message that arrives
 * while a local copy is read from Redis voids it (with the naive two-tier
 * design as the control that keeps the stale value); a lost bus connection
 * empties the tier; tags invalidate every key and void fills in flight;
 * keys and tags never collide.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { after, before, describe, it } from 'node:test';
import { LeaseCache, type CacheEvent } from '../../packages/raceguard/src/cache/lease-cache.js';
import { gate } from '../helpers/gate.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

describe('LeaseCache: in-process tier and tags', () => {
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

  /** A two-tier instance with its own connections, resolved once its bus is subscribed. */
  async function instance(
    prefix: string,
    options: { client?: Redis; events?: CacheEvent[] } = {},
  ): Promise<{ cache: LeaseCache; subscriber: Redis }> {
    const subscriber = redis.connect();
    let up: () => void = () => undefined;
    const isUp = new Promise<void>((resolve) => {
      up = resolve;
    });
    const cache = new LeaseCache({
      client: options.client ?? redis.connect(),
      subscriber,
      prefix,
      local: {},
      onEvent: (e) => {
        options.events?.push(e);
        if (e.type === 'local-tier' && e.state === 'up') up();
      },
    });
    await isUp;
    return { cache, subscriber };
  }

  /** Resolves when `subscriber`'s tier has applied the next bus message (its listener runs first). */
  function nextBusMessage(subscriber: Redis, prefix: string): Promise<void> {
    return new Promise((resolve) => {
      const listener = (channel: string): void => {
        if (channel !== `${prefix}bus`) return;
        subscriber.off('message', listener);
        resolve();
      };
      subscriber.on('message', listener);
    });
  }

  it('serves hits from memory, and this process sees its own changes at once', async () => {
    const events: CacheEvent[] = [];
    const { cache } = await instance(`${redis.prefix}own:`, { events });
    assert.equal(await cache.get('k', async () => 'v1'), 'v1');
    assert.equal(await cache.get('k', async () => 'never'), 'v1');
    assert.ok(events.some((e) => e.type === 'hit' && e.tier === 'local'));
    assert.equal(await cache.write('k', 'v2', { version: 1 }), true);
    assert.equal(await cache.get('k', async () => 'never'), 'v2', 'the write, not the old copy');
    await cache.invalidate('k');
    assert.equal(await cache.get('k', async () => 'v3'), 'v3', 'the invalidation, at once');
    await cache.close();
  });

  it('two instances stay coherent: another instance drops its copy when the bus tells it', async () => {
    const prefix = `${redis.prefix}two:`;
    const a = await instance(prefix);
    const b = await instance(prefix);
    assert.equal(await b.cache.get('p', async () => 1), 1);
    assert.equal(await b.cache.get('p', async () => -1), 1, 'a local hit on B');
    const told = nextBusMessage(b.subscriber, prefix);
    await a.cache.invalidate('p');
    await told;
    assert.equal(await b.cache.get('p', async () => 2), 2, 'B reloads after the bus message');
    await a.cache.close();
    await b.cache.close();
  });

  it('the stale-set race through the local tier: 200 trials, the old price never stays', async () => {
    const prefix = `${redis.prefix}race:`;
    const reader = await instance(prefix);
    const writer = await instance(prefix);
    let stale = 0;
    for (let id = 0; id < 200; id++) {
      await db.pool.query('INSERT INTO prices VALUES ($1, 100)', [id]);
      const key = `price:${id}`;
      const slow = gate();
      const read = reader.cache.get(key, async () => {
        const old = await priceOf(id);
        await slow.wait();
        return old;
      });
      await slow.arrived;
      await db.pool.query('UPDATE prices SET price = 101 WHERE id = $1', [id]);
      const told = nextBusMessage(reader.subscriber, prefix);
      await writer.cache.invalidate(key);
      await told;
      slow.open();
      await read;
      // Both tiers of both instances, twice (the second read of each is a hit).
      for (const cache of [reader.cache, writer.cache, reader.cache, writer.cache]) {
        if ((await cache.get(key, () => priceOf(id))) !== 101) stale++;
      }
    }
    assert.equal(stale, 0);
    await reader.cache.close();
    await writer.cache.close();
  });

  it('a bus message that arrives while a copy is read from Redis voids it (control: the naive tier keeps it)', async () => {
    const prefix = `${redis.prefix}void:`;
    const real = redis.connect();
    const held = gate();
    let holding = false;
    // The reader's GET replies are held back while `holding`: the invalidation's bus message overtakes them.
    const slowGets = new Proxy(real, {
      get(target, property, receiver) {
        if (property !== 'get') return Reflect.get(target, property, receiver) as unknown;
        return async (key: string) => {
          const reply = await target.get(key);
          if (holding) await held.wait();
          return reply;
        };
      },
    });
    const reader = await instance(prefix, { client: slowGets });
    const writer = await instance(prefix);
    await writer.cache.write('p', 'old', { version: 1 });
    holding = true;
    const read = reader.cache.get('p', async () => 'never');
    await held.arrived; // the reader's GET has read 'old' from Redis
    const told = nextBusMessage(reader.subscriber, prefix);
    await writer.cache.write('p', 'new', { version: 2 });
    await told;
    holding = false;
    held.open();
    assert.equal(await read, 'old', 'that read began before the write');
    assert.equal(await reader.cache.get('p', async () => 'never'), 'new', 'nothing stale was kept');

    // The control: a tier that stores whatever a read returns and drops on a bus message.
    const naive = new Map<string, string>();
    const bus = redis.connect();
    await bus.subscribe(`${prefix}bus`);
    bus.on('message', () => naive.clear());
    const gotOld = await real.get(`${prefix}v:{p}`);
    const message = once(bus, 'message');
    await writer.cache.write('p', 'newer', { version: 3 });
    await message;
    if (gotOld !== null) naive.set('p', gotOld); // the reply, processed after the message
    assert.equal(naive.get('p'), JSON.stringify('new'), 'the naive tier keeps the old value');
    await reader.cache.close();
    await writer.cache.close();
  });

  it('a subscription that takes longer than the trust window still brings the tier up for good', async () => {
    // A subscribe queued behind a reconnect: 400 ms, twice BUS_TRUST_MS. A
    // probe timed from before the subscribe came back "too old", brought the
    // tier up and down again at the next lookup (a CI run caught it).
    const subscriber = redis.connect();
    const subscribe = subscriber.subscribe.bind(subscriber);
    const slowed = new Proxy(subscriber, {
      get(target, property, receiver) {
        if (property === 'subscribe')
          return async (channel: string) => {
            await new Promise((resolve) => setTimeout(resolve, 400));
            return subscribe(channel);
          };
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const events: CacheEvent[] = [];
    let up: () => void = () => undefined;
    const isUp = new Promise<void>((resolve) => (up = resolve));
    const cache = new LeaseCache({
      client: redis.connect(),
      subscriber: slowed,
      prefix: `${redis.prefix}slow:`,
      local: {},
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'local-tier' && e.state === 'up') up();
      },
    });
    await isUp;
    assert.equal(await cache.get('k', async () => 'v'), 'v');
    assert.equal(await cache.get('k', async () => 'never'), 'v');
    assert.equal(events.filter((e) => e.type === 'hit' && e.tier === 'local').length, 1);
    assert.equal(events.filter((e) => e.type === 'local-tier' && e.state === 'down').length, 0);
    await cache.close();
  });

  it('a lost bus connection empties the tier; it serves again once resubscribed', async () => {
    const prefix = `${redis.prefix}lost:`;
    const events: CacheEvent[] = [];
    const b = await instance(prefix, { events });
    const a = await instance(prefix);
    assert.equal(await b.cache.get('k', async () => 'v1'), 'v1');
    assert.equal(b.cache.localTierUp, true);
    const down = new Promise<void>((resolve) =>
      b.subscriber.once('close', () => setImmediate(resolve)),
    );
    await redis.client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await down;
    assert.equal(b.cache.localTierUp, false);
    assert.ok(events.some((e) => e.type === 'local-tier' && e.state === 'down'));
    // An invalidation B cannot hear of: it must not serve its old copy.
    await a.cache.invalidate('k');
    assert.equal(await b.cache.get('k', async () => 'v2'), 'v2');
    const up = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (b.cache.localTierUp) {
          clearInterval(check);
          resolve();
        }
      }, 10);
    });
    await up;
    assert.equal(await b.cache.get('k', async () => 'never'), 'v2');
    const hits = events.filter((e) => e.type === 'hit' && e.tier === 'local').length;
    assert.equal(await b.cache.get('k', async () => 'never'), 'v2');
    assert.equal(
      events.filter((e) => e.type === 'hit' && e.tier === 'local').length,
      hits + 1,
      'served from memory again',
    );
    await a.cache.close();
    await b.cache.close();
  });

  it('invalidateTag removes every key of the tag and voids fills in flight', async () => {
    const cache = new LeaseCache({ client: redis.client, prefix: `${redis.prefix}tag:` });
    for (const id of [1, 2, 3]) {
      await cache.get(`price:${id}`, async () => id * 10, { tags: ['category:7'] });
    }
    await cache.get('price:4', async () => 40, { tags: ['category:8'] });
    const slow = gate();
    const filling = cache.get(
      'price:5',
      async () => {
        await slow.wait();
        return 'old';
      },
      { tags: ['category:7'] },
    );
    await slow.arrived;
    assert.equal(await cache.invalidateTag('category:7'), 4, 'three filled, one filling');
    slow.open();
    assert.equal(await filling, 'old');
    for (const id of [1, 2, 3, 5]) {
      assert.equal(await cache.get(`price:${id}`, async () => 'reloaded'), 'reloaded');
    }
    assert.equal(await cache.get('price:4', async () => 'never'), 40, 'other tags untouched');
    assert.equal(await cache.invalidateTag('category:7'), 0, 'the tag was emptied');
  });

  it('keys and tags never collide, whatever characters they hold', async () => {
    const prefix = `${redis.prefix}collide:`;
    const cache = new LeaseCache({ client: redis.client, prefix });
    const keys = ['a}b', 'a%7Db', 'a%257Db', '{a}', 'a', 't:a', 'v:{a}'];
    for (const key of keys) await cache.get(key, async () => key, { tags: [key] });
    for (const key of keys) assert.equal(await cache.get(key, async () => 'never'), key);
    assert.equal(await cache.invalidateTag('a}b'), 1);
    assert.equal(await cache.get('a%7Db', async () => 'never'), 'a%7Db');
    assert.equal(await cache.get('a}b', async () => 'reloaded'), 'reloaded');
    await assert.rejects(
      cache.get('k', async () => 1, { tags: [''] }),
      /tag must be a non-empty string/,
    );
    await assert.rejects(
      cache.get('k', async () => 1, { tags: 'a,b' as never }),
      /options\.tags must be an array/,
    );
    await assert.rejects(
      cache.get('k', async () => 1, { tags: Array.from({ length: 65 }, (_, i) => `t${i}`) }),
      /at most 64 tags/,
    );
    await assert.rejects(cache.invalidate('k', { mark: 'yes' as never }), /options\.mark/);
    assert.throws(
      () => new LeaseCache({ client: redis.client, local: {} }),
      /options\.subscriber must be a subscriber connection/,
    );
    assert.throws(
      () =>
        new LeaseCache({
          client: redis.client,
          subscriber: redis.connect(),
          local: { size: 1 } as never,
        }),
      /options\.local\.size/,
    );
  });
});
