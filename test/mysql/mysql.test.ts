/**
 * raceguard/mysql on a real MariaDB: 100-way races on the atomic updates and
 * compare-and-set (with the naive read-then-write as the control that
 * fails), the matched-versus-changed rows trap of mysql2, the new value from
 * LAST_INSERT_ID in one round trip, transactions re-run after a real
 * deadlock and a real lock wait timeout, NOWAIT and SKIP LOCKED, and bad
 * input refused with nothing written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  atomicDecrement,
  atomicIncrement,
  compareAndSet,
  lockRows,
  MysqlLockTimeoutError,
  OptimisticConflictError,
  optimisticUpdate,
  StaleSnapshotError,
  transaction,
  versionedRows,
  MysqlLeaseLock,
} from '../../packages/raceguard/src/mysql/index.js';
import { LockBackendError } from '../../packages/raceguard/src/core/lock.js';
import { conditionalWrites } from '../../packages/raceguard/src/http/index.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';

/** Resolves once `count` callers have arrived. */
function barrier(count: number): () => Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((resolve) => (release = resolve));
  return () => {
    arrived += 1;
    if (arrived === count) release();
    return all;
  };
}

describe('raceguard/mysql on MariaDB', () => {
  let db: TestMysql;
  before(async () => {
    db = await openTestMysql(40);
    await db.pool.query(
      'CREATE TABLE products (id int PRIMARY KEY, stock int UNSIGNED NOT NULL, status varchar(20) NOT NULL DEFAULT "on-sale") ENGINE=InnoDB',
    );
    await db.pool.query(
      'CREATE TABLE coupons (code varchar(20) PRIMARY KEY, used int NOT NULL, max_uses int NOT NULL) ENGINE=InnoDB',
    );
    await db.pool.query(
      'CREATE TABLE loans (id int PRIMARY KEY, status varchar(20) NOT NULL, decided_by varchar(40), version bigint NOT NULL) ENGINE=InnoDB',
    );
    await db.pool.query(
      'CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL) ENGINE=InnoDB',
    );
  });
  after(() => db.close());

  it('atomicDecrement: 100 buyers, 40 units: exactly 40 sales, each told the stock it left; the naive read-then-write oversells', async () => {
    await db.pool.query('DELETE FROM products');
    await db.pool.query('INSERT INTO products (id, stock) VALUES (1, 40)');
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        atomicDecrement(db.pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: 1 }),
      ),
    );
    const sold = results.filter((r) => r.applied);
    assert.equal(sold.length, 40);
    assert.deepEqual(
      sold.map((r) => (r.applied ? Number(r.row.stock) : -1)).sort((a, b) => a - b),
      Array.from({ length: 40 }, (_, i) => i),
      'every sale saw a different stock left (LAST_INSERT_ID)',
    );
    assert.ok(results.filter((r) => !r.applied).every((r) => !r.applied && r.reason === 'limit'));
    const [[row]] = (await db.pool.query('SELECT stock FROM products WHERE id = 1')) as unknown as [
      { stock: number }[],
    ];
    assert.equal(row!.stock, 0);
    assert.deepEqual(
      await atomicDecrement(db.pool, {
        table: 'products',
        key: { id: 9 },
        column: 'stock',
        amount: 1,
      }),
      {
        applied: false,
        reason: 'not-found',
      },
    );

    // Control: read, check, write back what was read minus one.
    await db.pool.query('UPDATE products SET stock = 40 WHERE id = 1');
    let naive = 0;
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        const [[current]] = (await db.pool.query(
          'SELECT stock FROM products WHERE id = 1',
        )) as unknown as [{ stock: number }[]];
        if (current!.stock > 0) {
          await db.pool.query('UPDATE products SET stock = ? WHERE id = 1', [current!.stock - 1]);
          naive += 1;
        }
      }),
    );
    const [[after]] = (await db.pool.query(
      'SELECT stock FROM products WHERE id = 1',
    )) as unknown as [{ stock: number }[]];
    assert.ok(
      naive + after!.stock > 40,
      `the naive version sold ${naive} and left ${after!.stock} of 40`,
    );
  });

  it('atomicIncrement with a cap stored in the row: 100 redemptions of a coupon capped at 25', async () => {
    await db.pool.query("INSERT INTO coupons VALUES ('SPRING', 0, 25)");
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        atomicIncrement(db.pool, {
          table: 'coupons',
          key: { code: 'SPRING' },
          column: 'used',
          amount: 1,
          ceilingColumn: 'max_uses',
        }),
      ),
    );
    assert.equal(results.filter((r) => r.applied).length, 25);
    const [[row]] = (await db.pool.query(
      "SELECT used FROM coupons WHERE code = 'SPRING'",
    )) as unknown as [{ used: number }[]];
    assert.equal(row!.used, 25);
  });

  it("mysql2's affectedRows counts matched rows: a no-op UPDATE reports 1 affected, 0 changed", async () => {
    const [header] = (await db.pool.query(
      "UPDATE products SET status = 'on-sale' WHERE id = 1",
    )) as unknown as [{ affectedRows: number; changedRows: number }];
    assert.deepEqual([header.affectedRows, header.changedRows], [1, 0]);
  });

  it('compareAndSet: 100 officers decide version 1 at once: exactly one applies', async () => {
    await db.pool.query("INSERT INTO loans VALUES (1, 'pending', NULL, 1)");
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        compareAndSet(db.pool, {
          table: 'loans',
          key: { id: 1 },
          expectedVersion: 1,
          set: { status: i % 2 ? 'approved' : 'rejected', decided_by: `officer-${i}` },
        }),
      ),
    );
    assert.equal(results.filter((r) => r.applied).length, 1);
    assert.equal(results.find((r) => r.applied)!.version, '2');
    const [[row]] = (await db.pool.query('SELECT version FROM loans WHERE id = 1')) as unknown as [
      { version: number }[],
    ];
    assert.equal(Number(row!.version), 2);
  });

  it('transaction: a real deadlock (1213) re-runs the victim from the start; both transfers commit', async () => {
    await db.pool.query('DELETE FROM accounts');
    await db.pool.query('INSERT INTO accounts VALUES (1, 100), (2, 100)');
    const bothHoldFirst = barrier(2);
    let attempts = 0;
    const transfer = (from: number, to: number) =>
      transaction(
        db.pool,
        async (tx, { attempt }) => {
          attempts += 1;
          await tx.query('UPDATE accounts SET balance = balance - 10 WHERE id = ?', [from]);
          if (attempt === 1) await bothHoldFirst(); // both hold their first row: the cycle closes
          await tx.query('UPDATE accounts SET balance = balance + 10 WHERE id = ?', [to]);
        },
        { maxAttempts: 5 },
      );
    await Promise.all([transfer(1, 2), transfer(2, 1)]);
    assert.equal(attempts, 3, 'one of the two was the deadlock victim and ran again');
    const [rows] = (await db.pool.query(
      'SELECT id, balance FROM accounts ORDER BY id',
    )) as unknown as [{ balance: number }[]];
    assert.deepEqual(
      rows.map((r) => r.balance),
      [100, 100],
    );
    // Control: without a retry, the victim fails with InnoDB's deadlock error.
    const again = barrier(2);
    const once = (from: number, to: number) =>
      transaction(
        db.pool,
        async (tx) => {
          await tx.query('UPDATE accounts SET balance = balance - 10 WHERE id = ?', [from]);
          await again();
          await tx.query('UPDATE accounts SET balance = balance + 10 WHERE id = ?', [to]);
        },
        { maxAttempts: 1 },
      );
    const outcomes = await Promise.allSettled([once(1, 2), once(2, 1)]);
    const failed = outcomes.filter((o) => o.status === 'rejected');
    assert.equal(failed.length, 1);
    // Attempts exhausted at the first: the deadlock is the cause, typed with InnoDB's error number.
    const reason = (failed[0] as PromiseRejectedResult).reason as {
      code?: string;
      cause?: { errno?: number };
    };
    assert.equal(reason.code, 'RACEGUARD_RETRY_EXHAUSTED');
    assert.equal(reason.cause?.errno, 1213);
  });

  it('transaction: a lock wait timeout (1205) abandons the half-done transaction and re-runs it', async () => {
    await db.pool.query('DELETE FROM accounts');
    await db.pool.query('INSERT INTO accounts VALUES (1, 100), (2, 100)');
    const holder = await db.pool.getConnection();
    await holder.query('START TRANSACTION');
    await holder.query('SELECT * FROM accounts WHERE id = 2 FOR UPDATE');
    let attempts = 0;
    const running = transaction(
      db.pool,
      async (tx) => {
        attempts += 1;
        await tx.query('SET SESSION innodb_lock_wait_timeout = 1');
        await tx.query('UPDATE accounts SET balance = balance - 10 WHERE id = 1');
        await tx.query('UPDATE accounts SET balance = balance + 10 WHERE id = 2');
      },
      {
        maxAttempts: 5,
        // The holder lets go once the first attempt has timed out: the re-run goes through.
        onRetry: () => {
          void holder.query('COMMIT').finally(() => holder.release());
        },
      },
    );
    await running;
    assert.ok(attempts >= 2, `${attempts} attempts`);
    const [rows] = (await db.pool.query('SELECT balance FROM accounts ORDER BY id')) as unknown as [
      { balance: number }[],
    ];
    // The first attempt's debit of account 1 was rolled back with it, not kept: exactly one transfer.
    assert.deepEqual(
      rows.map((r) => r.balance),
      [90, 110],
    );
  });

  it('lockRows: NOWAIT fails at once with a typed error, SKIP LOCKED leaves the held row out', async () => {
    await db.pool.query('DELETE FROM accounts');
    await db.pool.query('INSERT INTO accounts VALUES (1, 100), (2, 100)');
    const holder = await db.pool.getConnection();
    await holder.query('START TRANSACTION');
    await holder.query('SELECT * FROM accounts WHERE id = 1 FOR UPDATE');
    try {
      await assert.rejects(
        transaction(
          db.pool,
          (tx) => lockRows(tx, { table: 'accounts', key: { id: 1 }, wait: 'nowait' }),
          { maxAttempts: 1 },
        ),
        (error: unknown) =>
          error instanceof MysqlLockTimeoutError && error.code === 'RACEGUARD_MYSQL_LOCK_TIMEOUT',
      );
      const skipped = await transaction(db.pool, (tx) =>
        lockRows(tx, { table: 'accounts', key: { id: 1 }, wait: 'skip locked' }),
      );
      assert.deepEqual(skipped, []);
      const free = await transaction(db.pool, (tx) =>
        lockRows(tx, { table: 'accounts', key: { id: 2 }, wait: 'nowait' }),
      );
      assert.equal(free.length, 1);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
  });

  it('optimisticUpdate: 50 concurrent read-modify-writes all land; with one attempt each, the losers get a conflict carrying the row', async () => {
    await db.pool.query(
      'CREATE TABLE IF NOT EXISTS counters (id int PRIMARY KEY, n int NOT NULL, version bigint NOT NULL) ENGINE=InnoDB',
    );
    await db.pool.query('DELETE FROM counters');
    await db.pool.query('INSERT INTO counters VALUES (1, 0, 1)');
    const increment = (maxAttempts: number) =>
      optimisticUpdate(db.pool, {
        table: 'counters',
        key: { id: 1 },
        maxAttempts,
        maxDelayMs: 20,
        update: (row) => ({ n: Number(row.n) + 1 }),
      });
    const results = await Promise.all(Array.from({ length: 50 }, () => increment(200)));
    assert.ok(results.every((r) => r.applied));
    const [[row]] = (await db.pool.query(
      'SELECT n, version FROM counters WHERE id = 1',
    )) as unknown as [{ n: number; version: number }[]];
    assert.deepEqual([row!.n, Number(row!.version)], [50, 51]);
    const once = await Promise.allSettled(Array.from({ length: 20 }, () => increment(1)));
    const conflicts = once.filter((o) => o.status === 'rejected').map((o) => o.reason as unknown);
    assert.ok(
      conflicts.length > 0 &&
        conflicts.every((e) => e instanceof OptimisticConflictError && e.current !== undefined),
    );
    const skipped = await optimisticUpdate(db.pool, {
      table: 'counters',
      key: { id: 1 },
      update: () => null,
    });
    assert.equal(skipped.applied, false);
  });

  it('optimisticUpdate with a version column named like its internal alias (raceguard_version)', async () => {
    await db.pool.query(
      'CREATE TABLE IF NOT EXISTS aliased (id int PRIMARY KEY, n int NOT NULL, raceguard_version int NOT NULL) ENGINE=InnoDB',
    );
    await db.pool.query('DELETE FROM aliased');
    await db.pool.query('INSERT INTO aliased VALUES (1, 0, 4)');
    const result = await optimisticUpdate(db.pool, {
      table: 'aliased',
      key: { id: 1 },
      versionColumn: 'raceguard_version',
      update: (row) => ({ n: Number(row.n) + 1 }),
    });
    assert.equal(result.applied, true);
    const [[row]] = (await db.pool.query(
      'SELECT n, raceguard_version FROM aliased',
    )) as unknown as [{ n: number; raceguard_version: number }[]];
    assert.deepEqual([row!.n, row!.raceguard_version], [1, 5]);
  });

  it('optimisticUpdate in a REPEATABLE READ transaction: a lost race is named a stale snapshot at once; in READ COMMITTED it retries and lands', async () => {
    await db.pool.query(
      'CREATE TABLE IF NOT EXISTS snapshots (id int PRIMARY KEY, n int NOT NULL, version bigint NOT NULL) ENGINE=InnoDB',
    );
    await db.pool.query('DELETE FROM snapshots');
    await db.pool.query('INSERT INTO snapshots VALUES (1, 0, 1)');
    // The first read of the transaction takes its snapshot; another session then commits
    // a write, so the version check of the first attempt loses.
    const attempt = (isolation: 'repeatable read' | 'read committed') => {
      let calls = 0;
      return transaction(
        db.pool,
        (tx) =>
          optimisticUpdate(tx, {
            table: 'snapshots',
            key: { id: 1 },
            maxAttempts: 5,
            maxDelayMs: 5,
            update: async (row) => {
              calls += 1;
              if (calls === 1)
                await db.pool.query('UPDATE snapshots SET n = n + 100, version = version + 1');
              return { n: Number(row.n) + 1 };
            },
          }),
        { isolation, maxAttempts: 1 },
      ).then((result) => ({ result, calls }));
    };
    const stale = await attempt('repeatable read').then(
      () => assert.fail('expected a StaleSnapshotError'),
      (error: unknown) => error,
    );
    assert.ok(stale instanceof StaleSnapshotError, String(stale));
    assert.equal(stale.code, 'RACEGUARD_MYSQL_STALE_SNAPSHOT');
    assert.equal(Number(stale.version), 1);
    assert.match(stale.message, /READ COMMITTED/);
    const fresh = await attempt('read committed');
    assert.equal(fresh.result.applied, true);
    assert.equal(fresh.calls, 2);
    const [[row]] = (await db.pool.query(
      'SELECT n, version FROM snapshots WHERE id = 1',
    )) as unknown as [{ n: number; version: number }[]];
    // Two outside writes of 100, one update of ours on top of the second.
    assert.deepEqual([row!.n, Number(row!.version)], [201, 4]);
  });

  it('conditional writes (ETag / If-Match) on MariaDB: 100 editors saving version 1 at once: one 200, 99 412', async () => {
    await db.pool.query(
      'CREATE TABLE IF NOT EXISTS documents (id int PRIMARY KEY, title varchar(60) NOT NULL, version bigint NOT NULL) ENGINE=InnoDB',
    );
    await db.pool.query('DELETE FROM documents');
    await db.pool.query("INSERT INTO documents VALUES (1, 'draft', 1)");
    const documents = conditionalWrites(versionedRows(db.pool, { table: 'documents' }));
    const responses = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        documents.update({ id: 1 }, { title: `edit ${i}` }, { 'if-match': '"1"' }),
      ),
    );
    assert.deepEqual(
      [
        responses.filter((r) => r.status === 200).length,
        responses.filter((r) => r.status === 412).length,
      ],
      [1, 99],
    );
    assert.ok(responses.filter((r) => r.status === 412).every((r) => r.headers.etag === '"2"'));
    assert.equal(
      (await documents.create({ id: 2 }, { title: 'new' }, { 'if-none-match': '*' })).status,
      201,
    );
    assert.equal(
      (await documents.create({ id: 2 }, { title: 'again' }, { 'if-none-match': '*' })).status,
      412,
    );
    assert.equal((await documents.delete({ id: 2 }, { 'if-match': '"7"' })).status, 412);
    assert.equal((await documents.delete({ id: 2 }, { 'if-match': '"1"' })).status, 204);
    assert.equal((await documents.read({ id: 2 }, {})).status, 404);
  });

  it('a lease lock on a table never created says which table and what creates it', async () => {
    const locks = new MysqlLeaseLock({ client: db.pool, table: 'no_such_leases' });
    const error = await locks.acquire('k').catch((e: unknown) => e);
    assert.ok(error instanceof LockBackendError, String(error));
    assert.match(
      error.message,
      /the lease table "no_such_leases" does not exist; create it once, e.g. in a migration, with createMysqlLockTables\(pool, \{ table: "no_such_leases" \}\)/,
    );
  });

  it('refuses bad input before writing anything; identifiers cannot inject', async () => {
    await assert.rejects(
      atomicDecrement(db.pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: 0 }),
      InvalidArgumentError,
    );
    await assert.rejects(
      atomicDecrement(db.pool, { table: 'products', key: {}, column: 'stock', amount: 1 }),
      InvalidArgumentError,
    );
    await assert.rejects(
      atomicDecrement(db.pool, {
        table: 'products',
        key: { id: 1 },
        column: 'stock',
        amount: 1,
        flor: 0,
      } as never),
      /options\.flor/,
    );
    await assert.rejects(
      compareAndSet(db.pool, {
        table: 'loans',
        key: { id: 1 },
        expectedVersion: 'two',
        set: { status: 'x' },
      }),
      /expectedVersion/,
    );
    await assert.rejects(
      atomicDecrement(db.pool, {
        table: 'products',
        key: { id: 1 },
        column: 'stock`; DROP TABLE products; --',
        amount: 1,
      }),
      /Unknown column/,
    );
    const [[present]] = (await db.pool.query(
      "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'products'",
    )) as unknown as [{ n: number }[]];
    assert.equal(Number(present!.n), 1);
    await assert.rejects(
      transaction({} as never, async () => undefined),
      /pool/,
    );
    await assert.rejects(
      transaction(db.pool, async () => undefined, { isolation: 'snapshot' as never }),
      /isolation/,
    );
  });
});
