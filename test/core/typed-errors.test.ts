/**
 * Every public function answers bad input with a typed error naming the
 * argument, and every error a subpath can throw is importable from it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { withLock } from '../../packages/raceguard/src/core/lock.js';
import * as postgres from '../../packages/raceguard/src/postgres/index.js';
import * as redis from '../../packages/raceguard/src/redis/index.js';
import * as etcd from '../../packages/raceguard/src/etcd/index.js';
import * as zk from '../../packages/raceguard/src/zookeeper/index.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('typed errors', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(5);
    await db.pool.query(
      'CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, version int NOT NULL DEFAULT 0)',
    );
    await db.pool.query('INSERT INTO accounts (id, balance) VALUES (1, 10)');
  });
  after(() => db.close());

  it('transaction() refuses a pg.Client and a bare { query } with InvalidArgumentError naming "pool"', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      for (const notAPool of [client, { query: () => Promise.resolve({ rows: [] }) }]) {
        await assert.rejects(
          postgres.transaction(notAPool as never, () => Promise.resolve()),
          (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'pool',
        );
      }
      // The client is untouched and still usable.
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await client.end();
    }
  });

  it('withLock(undefined, ...) is an InvalidArgumentError naming "locker"', async () => {
    await assert.rejects(
      withLock(undefined as never, 'k', () => Promise.resolve()),
      (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'locker',
    );
  });

  it('optimisticUpdate and compareAndSet agree on a misspelled version column: UnknownIdentifierError', async () => {
    const misspelled = { table: 'accounts', key: { id: 1 }, versionColumn: 'verison' };
    await assert.rejects(
      postgres.optimisticUpdate(db.pool, { ...misspelled, update: () => ({ balance: 5 }) }),
      postgres.UnknownIdentifierError,
    );
    await assert.rejects(
      postgres.compareAndSet(db.pool, { ...misspelled, expectedVersion: 0, set: { balance: 5 } }),
      postgres.UnknownIdentifierError,
    );
    // Control: a missing row is still RowNotFoundError.
    await assert.rejects(
      postgres.optimisticUpdate(db.pool, {
        table: 'accounts',
        key: { id: 99 },
        update: () => ({ balance: 5 }),
      }),
      postgres.RowNotFoundError,
    );
  });

  it('every error a subpath can throw is importable from it', () => {
    const core = [
      'RaceguardError',
      'InvalidArgumentError',
      'RetryExhaustedError',
      'AbortedError',
      'LockAcquireTimeoutError',
      'LockBackendError',
      'LockLostError',
      'LockNotOwnerError',
      'LockSessionLostError',
      'StaleTokenError',
      'UnsupportedLockOptionError',
    ];
    const idempotency = [
      'IdempotencyClaimLostError',
      'IdempotencyInFlightError',
      'IdempotencyKeyReusedError',
      'IdempotencyStoreError',
      'InvalidIdempotencyKeyError',
    ];
    for (const [name, module, expected] of [
      ['raceguard/postgres', postgres, [...core, ...idempotency, 'LockTimeoutError']],
      ['raceguard/redis', redis, [...core, ...idempotency, 'QuorumNotReachedError']],
      ['raceguard/etcd', etcd, core],
      ['raceguard/zookeeper', zk, core],
    ] as const) {
      const missing = expected.filter(
        (error) => typeof (module as Record<string, unknown>)[error] !== 'function',
      );
      assert.deepEqual(missing, [], `${name} does not export ${missing.join(', ')}`);
    }
  });
});
