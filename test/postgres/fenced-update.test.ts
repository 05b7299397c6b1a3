import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { StaleTokenError } from '../../packages/raceguard/src/core/lock.js';
import { KeyedMutex } from '../../packages/raceguard/src/local/keyed-mutex.js';
import { RowNotFoundError } from '../../packages/raceguard/src/postgres/errors.js';
import { fencedUpdate } from '../../packages/raceguard/src/postgres/fenced-update.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('fencedUpdate', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(10);
    await db.pool
      .query(`CREATE TABLE invoices (id int PRIMARY KEY, status text NOT NULL, fence_token bigint);
      INSERT INTO invoices VALUES (1, 'draft', NULL)`);
  });
  after(() => db.close());

  it('accepts the first token, the same token again and newer ones; refuses older ones and records nothing', async () => {
    const row = await fencedUpdate(db.pool, {
      table: 'invoices',
      key: { id: 1 },
      set: { status: 'a' },
      token: 7n,
    });
    assert.equal(row.fence_token, '7');
    await fencedUpdate(db.pool, {
      table: 'invoices',
      key: { id: 1 },
      set: { status: 'a2' },
      token: 7n,
    });
    const stale = await fencedUpdate(db.pool, {
      table: 'invoices',
      key: { id: 1 },
      set: { status: 'stale' },
      token: 6n,
    }).catch((e: unknown) => e);
    assert.ok(stale instanceof StaleTokenError);
    assert.equal(stale.currentToken, 7n);
    assert.equal(stale.code, 'RACEGUARD_STALE_TOKEN');
    await fencedUpdate(db.pool, {
      table: 'invoices',
      key: { id: 1 },
      set: { status: 'b' },
      token: 9n,
    });
    const { rows } = await db.pool.query('SELECT status, fence_token FROM invoices WHERE id = 1');
    assert.deepEqual(rows[0], { status: 'b', fence_token: '9' });
  });

  it('a lock holder whose lease ran out cannot overwrite its successor', async () => {
    const mutex = new KeyedMutex();
    const first = await mutex.acquire('invoice:1', { ttlMs: 20 });
    const second = await mutex.acquire('invoice:1'); // granted once the first lease expires
    await fencedUpdate(db.pool, {
      table: 'invoices',
      key: { id: 1 },
      set: { status: 'second' },
      token: second.token + 100n,
    });
    await assert.rejects(
      fencedUpdate(db.pool, {
        table: 'invoices',
        key: { id: 1 },
        set: { status: 'first' },
        token: first.token + 100n,
      }),
      StaleTokenError,
    );
    await second.release();
  });

  it('rejects bad input and missing rows', async () => {
    await assert.rejects(
      fencedUpdate(db.pool, {
        table: 'invoices',
        key: { id: 2 },
        set: { status: 'x' },
        token: 100n,
      }),
      RowNotFoundError,
    );
    await assert.rejects(
      fencedUpdate(db.pool, {
        table: 'invoices',
        key: { id: 1 },
        set: { status: 'x' },
        token: 5 as unknown as bigint,
      }),
      InvalidArgumentError,
    );
    await assert.rejects(
      fencedUpdate(db.pool, { table: 'invoices', key: { id: 1 }, set: {}, token: 100n }),
      InvalidArgumentError,
    );
  });
});
