import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { LockTimeoutError } from '../../packages/raceguard/src/postgres/errors.js';
import { lockRows, type RowLockMode } from '../../packages/raceguard/src/postgres/row-lock.js';
import {
  transaction,
  type Transaction,
} from '../../packages/raceguard/src/postgres/transaction.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('lockRows (pessimistic locking)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(30);
    await db.pool.query(`CREATE TABLE accounts (id int primary key, balance int not null);
      CREATE TABLE withdrawals (account_id int not null, amount int not null);
      CREATE TABLE jobs (id int primary key, taken boolean not null default false);`);
  });
  after(() => db.close());
  beforeEach(() =>
    db.pool.query(`TRUNCATE accounts, withdrawals, jobs;
      INSERT INTO accounts VALUES (1, 1000), (2, 0);
      INSERT INTO jobs (id) SELECT generate_series(1, 10);`),
  );

  it('100 concurrent check-then-withdraw never overdraw and debit exactly what was accepted', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 100 }, () =>
        transaction(db.pool, async (tx) => {
          const [account] = await lockRows(tx, { table: 'accounts', key: { id: 1 } });
          await delay(1);
          if ((account?.balance as number) < 30) return false;
          await tx.query('UPDATE accounts SET balance = balance - 30 WHERE id = 1');
          await tx.query('INSERT INTO withdrawals VALUES (1, 30)');
          return true;
        }),
      ),
    );
    const accepted = outcomes.filter(Boolean).length;
    const { rows } = await db.pool.query(
      'SELECT balance, (SELECT coalesce(sum(amount), 0)::int FROM withdrawals) AS debited FROM accounts WHERE id = 1',
    );
    assert.equal(accepted, 33);
    assert.equal(rows[0].balance, 10);
    assert.equal(rows[0].debited, 1000 - rows[0].balance);
  });

  it('nowait and lockTimeoutMs fail with LockTimeoutError while another transaction holds the row', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = transaction(db.pool, async (tx) => {
      await lockRows(tx, { table: 'accounts', key: { id: 1 } });
      locked();
      await held;
    });
    await isLocked;
    try {
      const nowait = await transaction(db.pool, (tx) =>
        lockRows(tx, { table: 'accounts', key: { id: 1 }, wait: 'nowait' }),
      ).catch((e: unknown) => e);
      assert.ok(nowait instanceof LockTimeoutError);
      assert.equal(nowait.lockTimeoutMs, 0);
      assert.match(nowait.message, /FOR UPDATE NOWAIT/);

      const started = performance.now();
      const timedOut = await transaction(db.pool, (tx) =>
        lockRows(tx, {
          table: 'accounts',
          key: { id: 1 },
          mode: 'no key update',
          lockTimeoutMs: 100,
        }),
      ).catch((e: unknown) => e);
      assert.ok(timedOut instanceof LockTimeoutError);
      assert.equal(timedOut.lockTimeoutMs, 100);
      assert.ok(performance.now() - started >= 90);

      const skipped = await transaction(db.pool, (tx) =>
        lockRows(tx, { table: 'accounts', key: { id: [1, 2] }, wait: 'skip locked' }),
      );
      assert.deepEqual(
        skipped.map((r) => r.id),
        [2],
      );
    } finally {
      release();
      await holder;
    }
  });

  it('restores the previous lock_timeout after a timed lock', async () => {
    const value = await transaction(
      db.pool,
      async (tx) => {
        await lockRows(tx, { table: 'accounts', key: { id: 1 }, lockTimeoutMs: 250 });
        const { rows } = await tx.query("SELECT current_setting('lock_timeout') AS v");
        return rows[0]?.v;
      },
      { lockTimeoutMs: 5000 },
    );
    assert.equal(value, '5s');
  });

  it('skip locked hands disjoint jobs to concurrent workers', async () => {
    const taken = await Promise.all(
      Array.from({ length: 5 }, () =>
        transaction(db.pool, async (tx) => {
          const rows = await lockRows(tx, {
            table: 'jobs',
            key: { taken: false },
            wait: 'skip locked',
            orderBy: ['id'],
          });
          const mine = rows.slice(0, 2).map((r) => r.id as number);
          await delay(20);
          await tx.query('UPDATE jobs SET taken = true WHERE id = ANY($1)', [mine]);
          return mine;
        }),
      ),
    );
    const all = taken.flat();
    assert.equal(new Set(all).size, all.length, `a job was taken twice: ${JSON.stringify(taken)}`);
  });

  it('validates options before any SQL', async () => {
    await transaction(db.pool, async (tx) => {
      await assert.rejects(lockRows(tx, { table: 'accounts', key: {} }), InvalidArgumentError);
      await assert.rejects(
        lockRows(tx, { table: 'accounts', key: { id: 1 }, mode: 'exclusive' as RowLockMode }),
        /one of/,
      );
      await assert.rejects(
        lockRows(tx, { table: 'accounts', key: { id: 1 }, wait: 'nowait', lockTimeoutMs: 10 }),
        /unset when wait is "nowait"/,
      );
      await assert.rejects(lockRows(tx, { table: 'accounts', key: { id: [] } }), /non-empty array/);
      // The key is called key, as on every row function (and on MySQL and the ORMs).
      await assert.rejects(
        lockRows(tx, { table: 'accounts', where: { id: 1 } } as never),
        /options\.where must be unset: it is called key/,
      );
    });
    await assert.rejects(
      lockRows(db.pool as unknown as Transaction, { table: 'accounts', key: { id: 1 } }),
      /a Transaction/,
    );
  });
});
