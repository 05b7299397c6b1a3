import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { atomicDecrement } from '../../packages/raceguard/src/postgres/atomic.js';
import { UnknownIdentifierError } from '../../packages/raceguard/src/postgres/errors.js';
import { quoteIdentifier, quoteTable } from '../../packages/raceguard/src/postgres/identifiers.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('quoteIdentifier', () => {
  it('quotes and doubles embedded quotes', () => {
    assert.equal(quoteIdentifier('stock'), '"stock"');
    assert.equal(quoteIdentifier('we"ird'), '"we""ird"');
    assert.equal(quoteTable(['shop', 'orders']), '"shop"."orders"');
  });

  it('rejects empty, NUL-containing, over-long and non-string names', () => {
    assert.throws(() => quoteIdentifier(''), InvalidArgumentError);
    assert.throws(() => quoteIdentifier('a\0b'), /NUL/);
    assert.throws(() => quoteIdentifier('x'.repeat(64)), /63 bytes/);
    assert.throws(() => quoteIdentifier(42), /received 42 \(number\)/);
    assert.throws(() => quoteTable(['a', 'b', 'c']), InvalidArgumentError);
  });
});

describe('identifiers against a real server', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(4);
    await db.pool.query('CREATE TABLE victim (id int primary key, n int not null)');
    await db.pool.query('INSERT INTO victim VALUES (1, 5)');
  });
  after(() => db.close());

  it('an injection attempt in a table name is just an unknown table', async () => {
    await assert.rejects(
      atomicDecrement(db.pool, {
        table: 'victim"; DROP TABLE victim; --',
        key: { id: 1 },
        column: 'n',
        amount: 1,
      }),
      UnknownIdentifierError,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { table: 'victim', key: { id: 1 }, column: 'n" = 0 --', amount: 1 }),
      UnknownIdentifierError,
    );
    const { rows } = await db.pool.query('SELECT n FROM victim WHERE id = 1');
    assert.equal(rows[0].n, 5);
  });
});
