import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { atomicDecrement, atomicIncrement } from '../../packages/raceguard/src/postgres/atomic.js';
import {
  PoolClosedError,
  UnknownIdentifierError,
} from '../../packages/raceguard/src/postgres/errors.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('atomic conditional updates', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(30);
    await db.pool.query(`CREATE TABLE products (id int primary key, stock int not null);
      CREATE TABLE coupons (code text primary key, redeemed int not null, max_redemptions int not null);`);
  });
  after(() => db.close());
  beforeEach(() =>
    db.pool.query(`TRUNCATE products, coupons;
      INSERT INTO products VALUES (1, 10); INSERT INTO coupons VALUES ('SPRING', 0, 7);`),
  );

  it('100 concurrent purchases of 10 units: exactly 10 apply, stock ends at 0', async () => {
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        atomicDecrement(db.pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: 1 }),
      ),
    );
    assert.equal(results.filter((r) => r.applied).length, 10);
    const refused = results.find((r) => !r.applied);
    assert.deepEqual(refused && !refused.applied && refused.reason, 'limit');
    const { rows } = await db.pool.query('SELECT stock FROM products WHERE id = 1');
    assert.equal(rows[0].stock, 0);
  });

  it('caps redemptions at a column of the row', async () => {
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        atomicIncrement(db.pool, {
          table: 'coupons',
          key: { code: 'SPRING' },
          column: 'redeemed',
          amount: 1,
          ceilingColumn: 'max_redemptions',
        }),
      ),
    );
    assert.equal(results.filter((r) => r.applied).length, 7);
    const { rows } = await db.pool.query('SELECT redeemed FROM coupons');
    assert.equal(rows[0].redeemed, 7);
  });

  it('increments without a ceiling, and with a constant one', async () => {
    await Promise.all(
      Array.from({ length: 100 }, () =>
        atomicIncrement(db.pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: 2 }),
      ),
    );
    const capped = await atomicIncrement(db.pool, {
      table: 'products',
      key: { id: 1 },
      column: 'stock',
      amount: 1,
      ceiling: 210,
    });
    assert.equal(capped.applied, false);
    const { rows } = await db.pool.query('SELECT stock FROM products WHERE id = 1');
    assert.equal(rows[0].stock, 210);
  });

  it('tells a missing row from a refused one, and honours a floor', async () => {
    const missing = await atomicDecrement(db.pool, {
      table: 'products',
      key: { id: 2 },
      column: 'stock',
      amount: 1,
    });
    assert.deepEqual(missing, { applied: false, reason: 'not-found' });
    const floored = await atomicDecrement(db.pool, {
      table: 'products',
      key: { id: 1 },
      column: 'stock',
      amount: 6,
      floor: 5,
    });
    assert.equal(floored.applied, false);
    assert.equal(!floored.applied && floored.reason === 'limit' && floored.current.stock, 10);
  });

  it('prepared statements survive a schema change, and can be turned off', async () => {
    const take = (prepare?: boolean) =>
      atomicDecrement(db.pool, {
        table: 'products',
        key: { id: 1 },
        column: 'stock',
        amount: 1,
        ...(prepare !== undefined && { prepare }),
      });
    await Promise.all(Array.from({ length: 30 }, () => take()));
    await db.pool.query('ALTER TABLE products ADD COLUMN note text');
    try {
      const after = await take();
      assert.deepEqual(after, {
        applied: false,
        reason: 'limit',
        current: { id: 1, stock: 0, note: null },
      });
      await db.pool.query('UPDATE products SET stock = 2 WHERE id = 1');
      const unprepared = await take(false);
      assert.deepEqual(unprepared, { applied: true, row: { id: 1, stock: 1 } });
    } finally {
      await db.pool.query('ALTER TABLE products DROP COLUMN note');
    }
  });

  it('bad input gets a typed error before any SQL and changes nothing', async () => {
    const base = { table: 'products', key: { id: 1 }, column: 'stock' } as const;
    for (const amount of [-1, 0, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(
        atomicDecrement(db.pool, { ...base, amount }),
        InvalidArgumentError,
        `amount ${amount}`,
      );
    }
    await assert.rejects(
      atomicDecrement(db.pool, { ...base, amount: '1' as unknown as number }),
      /received "1" \(string\)/,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { ...base, key: {}, amount: 1 }),
      InvalidArgumentError,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { ...base, key: { id: null }, amount: 1 }),
      /non-null/,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { ...base, column: '', amount: 1 }),
      InvalidArgumentError,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { ...base, column: 'stok', amount: 1 }),
      UnknownIdentifierError,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { ...base, table: 'product', amount: 1 }),
      UnknownIdentifierError,
    );
    await assert.rejects(
      atomicIncrement(db.pool, { ...base, amount: 1, ceiling: 5, ceilingColumn: 'stock' }),
      InvalidArgumentError,
    );
    const closed = db.newPool(1);
    await closed.end();
    await assert.rejects(atomicDecrement(closed, { ...base, amount: 1 }), PoolClosedError);
    const { rows } = await db.pool.query('SELECT stock FROM products WHERE id = 1');
    assert.equal(rows[0].stock, 10);
  });
});
