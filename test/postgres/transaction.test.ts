import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  AbortedError,
  InvalidArgumentError,
  RetryExhaustedError,
} from '../../packages/raceguard/src/core/errors.js';
import {
  CommitOutcomeUnknownError,
  DatabaseError,
  PoolClosedError,
  TransactionClosedError,
  TransactionRolledBackError,
} from '../../packages/raceguard/src/postgres/errors.js';
import {
  transaction,
  type IsolationLevel,
  type Transaction,
} from '../../packages/raceguard/src/postgres/transaction.js';
import { createBarrier } from '../helpers/barrier.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('transaction', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(30);
    await db.pool.query(`
      CREATE TABLE doctors (name text primary key, on_call boolean not null);
      CREATE TABLE counters (id int primary key, value int not null);
      CREATE TABLE items (id int primary key);`);
  });
  after(() => db.close());
  beforeEach(async () => {
    await db.pool.query(`TRUNCATE doctors, counters, items;
      INSERT INTO doctors VALUES ('alice', true), ('bob', true);
      INSERT INTO counters VALUES (1, 0), (2, 0);`);
  });

  it('refuses a misspelt option before taking a connection, like the MySQL and ORM transactions', async () => {
    let ran = false;
    const misspelt = { isolaton: 'serializable' } as unknown as Parameters<typeof transaction>[2];
    await assert.rejects(
      transaction(db.pool, () => Promise.resolve((ran = true)), misspelt),
      (error: unknown) =>
        error instanceof InvalidArgumentError && /options\.isolaton/.test(error.message),
    );
    assert.equal(ran, false);
    // Control: every documented option passes.
    const ok = await transaction(db.pool, () => Promise.resolve('ran'), {
      isolation: 'serializable',
      readOnly: false,
      lockTimeoutMs: 1000,
      statementTimeoutMs: 1000,
      maxAttempts: 2,
      baseDelayMs: 1,
      maxDelayMs: 2,
      deadlineMs: 5000,
      onRetry: () => undefined,
      random: Math.random,
    });
    assert.equal(ok, 'ran');
  });

  it('commits the result and rolls back everything when the callback throws', async () => {
    const value = await transaction(db.pool, async (tx) => {
      await tx.query('INSERT INTO items VALUES (1)');
      return 'done';
    });
    assert.equal(value, 'done');
    await assert.rejects(
      transaction(db.pool, async (tx) => {
        await tx.query('INSERT INTO items VALUES (2)');
        throw new Error('business rule');
      }),
      /business rule/,
    );
    const { rows } = await db.pool.query('SELECT id FROM items ORDER BY id');
    assert.deepEqual(rows, [{ id: 1 }]);
  });

  it('retries a real serialization failure (write skew under SERIALIZABLE) and keeps the invariant', async () => {
    // Two doctors go off call at once; at least one must stay on call.
    const barrier = createBarrier(2);
    const failures: unknown[] = [];
    const goOffCall = (name: string) =>
      transaction(
        db.pool,
        async (tx) => {
          const { rows } = await tx.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
          if (tx.attempt === 1) await barrier.arrive();
          if ((rows[0]?.n as number) < 2) return false;
          await tx.query('UPDATE doctors SET on_call = false WHERE name = $1', [name]);
          return true;
        },
        { isolation: 'serializable', onRetry: (e) => failures.push(e.error) },
      );
    const results = await Promise.all([goOffCall('alice'), goOffCall('bob')]);
    assert.deepEqual(results.sort(), [false, true]);
    assert.ok(failures.length >= 1);
    assert.ok(failures.every((e) => e instanceof DatabaseError && e.sqlState === '40001'));
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
    assert.equal(rows[0].n, 1);
  });

  it('the same write skew breaks the invariant under READ COMMITTED (the test can fail)', async () => {
    const barrier = createBarrier(2);
    const goOffCall = (name: string) =>
      transaction(db.pool, async (tx) => {
        const { rows } = await tx.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
        await barrier.arrive();
        if ((rows[0]?.n as number) < 2) return false;
        await tx.query('UPDATE doctors SET on_call = false WHERE name = $1', [name]);
        return true;
      });
    await Promise.all([goOffCall('alice'), goOffCall('bob')]);
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
    assert.equal(rows[0].n, 0);
  });

  it('retries a real deadlock (40P01)', async () => {
    const barrier = createBarrier(2);
    const seen: unknown[] = [];
    const lockBoth = (first: number, second: number) =>
      transaction(
        db.pool,
        async (tx) => {
          await tx.query('UPDATE counters SET value = value + 1 WHERE id = $1', [first]);
          if (tx.attempt === 1) await barrier.arrive();
          await tx.query('UPDATE counters SET value = value + 1 WHERE id = $1', [second]);
        },
        { onRetry: (e) => seen.push(e.error) },
      );
    await Promise.all([lockBoth(1, 2), lockBoth(2, 1)]);
    assert.equal(seen.length, 1);
    assert.ok(seen[0] instanceof DatabaseError && seen[0].sqlState === '40P01');
    const { rows } = await db.pool.query('SELECT value FROM counters ORDER BY id');
    assert.deepEqual(rows, [{ value: 2 }, { value: 2 }]);
  });

  it('gives up with RetryExhaustedError carrying attempts, elapsed ms and the 40001 cause', async () => {
    const barrier = createBarrier(2);
    const run = (name: string) =>
      transaction(
        db.pool,
        async (tx) => {
          const { rows } = await tx.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
          await barrier.arrive();
          if ((rows[0]?.n as number) === 2) {
            await tx.query('UPDATE doctors SET on_call = false WHERE name = $1', [name]);
          }
        },
        { isolation: 'serializable', maxAttempts: 1 },
      );
    const settled = await Promise.allSettled([run('alice'), run('bob')]);
    const rejected = settled.filter((s) => s.status === 'rejected');
    assert.equal(rejected.length, 1);
    const error = (rejected[0] as PromiseRejectedResult).reason as unknown;
    assert.ok(error instanceof RetryExhaustedError);
    assert.equal(error.attempts, 1);
    assert.ok(error.elapsedMs >= 0);
    assert.ok(error.cause instanceof DatabaseError && error.cause.sqlState === '40001');
  });

  it('100 concurrent SERIALIZABLE read-modify-write increments add exactly 100', async () => {
    let retries = 0;
    await Promise.all(
      Array.from({ length: 100 }, () =>
        transaction(
          db.pool,
          async (tx) => {
            const { rows } = await tx.query('SELECT value FROM counters WHERE id = 1');
            await tx.query('UPDATE counters SET value = $1 WHERE id = 1', [
              (rows[0]?.value as number) + 1,
            ]);
          },
          { isolation: 'serializable', maxAttempts: 200, maxDelayMs: 50, onRetry: () => retries++ },
        ),
      ),
    );
    const { rows } = await db.pool.query('SELECT value FROM counters WHERE id = 1');
    assert.equal(rows[0].value, 100);
    assert.ok(retries > 0, 'contention should have caused serialization failures');
  });

  it('never retries a non-retryable error', async () => {
    let calls = 0;
    await assert.rejects(
      transaction(db.pool, async (tx) => {
        calls++;
        await tx.query('INSERT INTO items VALUES (7), (7)');
      }),
      (e) => e instanceof DatabaseError && e.sqlState === '23505',
    );
    assert.equal(calls, 1);
  });

  it('reports an unknown outcome when the connection dies during COMMIT, and does not retry', async () => {
    await db.pool.query(`
      CREATE OR REPLACE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER items_slow_commit AFTER INSERT ON items
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();`);
    try {
      let calls = 0;
      const killer = db.newPool(1);
      const error = await transaction(db.pool, async (tx) => {
        calls++;
        await tx.query('INSERT INTO items VALUES (42)');
        const { rows } = await tx.query('SELECT pg_backend_pid() AS pid');
        // Terminate this backend while COMMIT runs the deferred trigger.
        setTimeout(() => void killer.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid]), 300);
      }).catch((e: unknown) => e);
      assert.ok(error instanceof CommitOutcomeUnknownError, String(error));
      assert.equal(error.code, 'RACEGUARD_COMMIT_OUTCOME_UNKNOWN');
      assert.equal(calls, 1);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM items');
      assert.equal(rows[0].n, 0);
    } finally {
      await db.pool.query('DROP TRIGGER items_slow_commit ON items');
    }
  });

  it('refuses to report success when a swallowed error made COMMIT roll back', async () => {
    await assert.rejects(
      transaction(db.pool, async (tx) => {
        await tx.query('INSERT INTO items VALUES (5)');
        await tx.query('SELECT * FROM no_such_table').catch(() => undefined);
      }),
      TransactionRolledBackError,
    );
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM items');
    assert.equal(rows[0].n, 0);
  });

  it('refuses queries through a finished transaction', async () => {
    let leaked: Transaction | undefined;
    await transaction(db.pool, (tx) => {
      leaked = tx;
      return Promise.resolve();
    });
    await assert.rejects(leaked!.query('SELECT 1'), TransactionClosedError);
  });

  it('applies lock and statement timeouts', async () => {
    await assert.rejects(
      transaction(db.pool, (tx) => tx.query('SELECT pg_sleep(2)'), { statementTimeoutMs: 50 }),
      (e) => e instanceof DatabaseError && e.sqlState === '57014',
    );
  });

  it('validates input before running anything, and honours an aborted signal', async () => {
    await assert.rejects(
      transaction(db.pool, () => Promise.resolve(), { maxAttempts: 0 }),
      InvalidArgumentError,
    );
    await assert.rejects(
      transaction(db.pool, () => Promise.resolve(), { isolation: 'snapshot' as IsolationLevel }),
      /one of "read committed"/,
    );
    let ran = false;
    await assert.rejects(
      transaction(
        db.pool,
        () => {
          ran = true;
          return Promise.resolve();
        },
        { signal: AbortSignal.abort() },
      ),
      AbortedError,
    );
    assert.equal(ran, false);
  });

  it('rejects a closed pool with PoolClosedError', async () => {
    const pool = db.newPool(1);
    await pool.end();
    await assert.rejects(
      transaction(pool, () => Promise.resolve()),
      PoolClosedError,
    );
  });
});
