/**
 * Every public function answers bad input with a typed error naming the
 * argument; the errors every backend shares come from one place
 * (`raceguard`), and each subpath exports its own.
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
import * as root from '../../packages/raceguard/src/index.js';
import * as messaging from '../../packages/raceguard/src/messaging/index.js';
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

  it('shared errors come from raceguard alone; each subpath exports its own', () => {
    const shared = [
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
      'IdempotencyClaimLostError',
      'IdempotencyInFlightError',
      'IdempotencyKeyReusedError',
      'IdempotencyStoreError',
      'InvalidIdempotencyKeyError',
    ];
    const missing = shared.filter(
      (name) => typeof (root as Record<string, unknown>)[name] !== 'function',
    );
    assert.deepEqual(missing, [], `raceguard does not export ${missing.join(', ')}`);
    assert.equal(typeof messaging.MessageDecodeError, 'function');
    for (const [name, module, own] of [
      ['raceguard/postgres', postgres, ['LockTimeoutError', 'DatabaseError', 'OutboxRelayError']],
      ['raceguard/redis', redis, ['QuorumNotReachedError']],
      ['raceguard/etcd', etcd, []],
      ['raceguard/zookeeper', zk, []],
    ] as const) {
      const exported = Object.keys(module);
      const foreign = exported.filter((e) => shared.includes(e) || e === 'MessageDecodeError');
      assert.deepEqual(foreign, [], `${name} re-exports ${foreign.join(', ')}`);
      const absent = own.filter((e) => !exported.includes(e));
      assert.deepEqual(absent, [], `${name} does not export its own ${absent.join(', ')}`);
    }
  });
});
