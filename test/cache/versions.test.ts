/**
 * Where write-through versions come from, on a real PostgreSQL and Redis:
 * a version column bumped by the writing statement orders the writers of a
 * row, so 100 concurrent `optimisticUpdate` writers with write-through and
 * readers filling beside them leave the cache equal to the row; `xmin`
 * does not (a transaction that took its id first but wrote the row last
 * carries the smaller one), which is why the docs warn against it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LeaseCache } from '../../packages/raceguard/src/cache/lease-cache.js';
import { optimisticUpdate } from '../../packages/raceguard/src/postgres/optimistic.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

describe('LeaseCache write-through versions from PostgreSQL', () => {
  let redis: TestRedis;
  let db: TestDatabase;
  before(async () => {
    redis = await openTestRedis();
    db = await openTestDatabase(24);
    await db.pool.query(
      'CREATE TABLE products (id int PRIMARY KEY, price int NOT NULL, version bigint NOT NULL)',
    );
    await db.pool.query('INSERT INTO products VALUES (1, 100, 1), (2, 100, 1)');
  });
  after(async () => {
    await redis.close();
    await db.close();
  });

  it('100 concurrent optimistic writers with write-through, readers filling beside them: the cache ends equal to the row', async () => {
    const cache = new LeaseCache({
      client: redis.client,
      subscriber: redis.connect(),
      prefix: `${redis.prefix}ver:`,
    });
    const load = async () =>
      (await db.pool.query('SELECT price, version FROM products WHERE id = 1')).rows[0] as {
        price: number;
        version: string;
      };
    let refused = 0;
    await Promise.all([
      ...Array.from({ length: 100 }, async () => {
        const { row } = await optimisticUpdate<{ price: number; version: string }>(db.pool, {
          table: 'products',
          key: { id: 1 },
          maxAttempts: 1000,
          update: (current) => ({ price: current.price + 1 }),
        });
        // pg returns the bigint column as a decimal string: passed as it is.
        if (!(await cache.write('product:1', row, { version: row.version }))) refused++;
      }),
      ...Array.from({ length: 100 }, () => cache.get('product:1', load)),
    ]);
    const final = await load();
    assert.equal(final.price, 200);
    const cached = await cache.get('product:1', async () => ({ price: -1, version: '0' }));
    assert.deepEqual({ price: cached.price, version: cached.version }, final);
    assert.ok(refused < 100, 'the newest write landed');
    await cache.close();
  });

  it('xmin is no version: the row’s later writer can carry the smaller transaction id', async () => {
    const first = await db.pool.connect();
    const second = await db.pool.connect();
    try {
      await first.query('BEGIN');
      await first.query('SELECT pg_current_xact_id()'); // takes its id now, writes later
      await second.query('BEGIN');
      await second.query('UPDATE products SET price = price + 1 WHERE id = 2');
      const { rows: early } = await second.query('SELECT xmin::text FROM products WHERE id = 2');
      await second.query('COMMIT');
      await first.query('UPDATE products SET price = price + 1 WHERE id = 2');
      await first.query('COMMIT');
      const { rows: late } = await db.pool.query('SELECT xmin::text FROM products WHERE id = 2');
      assert.ok(
        BigInt(late[0].xmin) < BigInt(early[0].xmin),
        `the last write's xmin ${late[0].xmin} is below the earlier write's ${early[0].xmin}`,
      );
    } finally {
      first.release();
      second.release();
    }
  });

  it('refuses versions that are not non-negative integers', async () => {
    const cache = new LeaseCache({ client: redis.client, prefix: `${redis.prefix}bad:` });
    for (const version of [-1, 1.5, '1e3', '-2', '', 'abc', Number.NaN]) {
      await assert.rejects(cache.write('k', 1, { version }), /options\.version/);
    }
    assert.equal(await cache.write('k', 'a', { version: '0010' }), true);
    assert.equal(await cache.write('k', 'b', { version: 9 }), false, '0010 is ten');
    assert.equal(await cache.write('k', 'c', { version: 11n }), true);
  });
});
