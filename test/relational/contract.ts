/**
 * The relational fixes' contract, one suite run against every way raceguard
 * speaks SQL: `raceguard/postgres` and `raceguard/mysql` on their drivers,
 * and the Kysely, Drizzle and TypeORM adapters on both dialects, all on
 * real servers. Each subject maps the same operations onto its own API.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  InvalidArgumentError,
  OptimisticConflictError,
  RowNotFoundError,
} from '../../packages/raceguard/src/core/errors.js';
import { LockAcquireTimeoutError } from '../../packages/raceguard/src/core/lock.js';
import type { VersionedRows } from '../../packages/raceguard/src/core/versioned-store.js';
import type {
  OrmKey,
  OrmAtomicDecrementOptions,
  OrmAtomicIncrementOptions,
  OrmAtomicResult,
  OrmCompareAndSetOptions,
  OrmLockRowsOptions,
  OrmOptimisticUpdateOptions,
  OrmOptimisticUpdateResult,
  OrmRow,
  OrmTransactionOptions,
  SqlTarget,
} from '../../packages/raceguard/src/orm/relational.js';
import { createBarrier } from '../helpers/barrier.js';

/** A transaction as a subject exposes it to the suite. */
export interface SubjectTransaction {
  readonly attempt: number;
  lockRows(options: OrmLockRowsOptions): Promise<OrmRow[]>;
  /** A statement through the subject's own transaction; `?` placeholders. */
  sql(text: string, values?: unknown[]): Promise<OrmRow[]>;
}

/** One way of speaking SQL, under test. */
export interface RelationalSubject {
  readonly name: string;
  readonly dialect: 'postgres' | 'mysql';
  /** A statement outside any transaction, through the subject; `?` placeholders. */
  sql(text: string, values?: unknown[]): Promise<OrmRow[]>;
  atomicDecrement(options: OrmAtomicDecrementOptions): Promise<OrmAtomicResult>;
  atomicIncrement(options: OrmAtomicIncrementOptions): Promise<OrmAtomicResult>;
  compareAndSet(options: OrmCompareAndSetOptions): Promise<{ readonly applied: boolean }>;
  optimisticUpdate(options: OrmOptimisticUpdateOptions): Promise<OrmOptimisticUpdateResult>;
  versionedRows(options: { readonly table: string }): VersionedRows<OrmKey, OrmRow>;
  transaction<T>(
    fn: (tx: SubjectTransaction) => Promise<T>,
    options?: OrmTransactionOptions,
  ): Promise<T>;
}

/** `?` placeholders rewritten as `$n` for PostgreSQL. */
export function placeholders(dialect: 'postgres' | 'mysql', text: string): string {
  if (dialect === 'mysql') return text;
  let n = 0;
  return text.replace(/\?/g, () => `$${++n}`);
}

/** Runs a statement on a {@link SqlTarget} and returns its rows. */
export async function runOn(target: SqlTarget, text: string, values: unknown[] = []) {
  const sql = placeholders(target.dialect, text);
  if (target.dialect === 'postgres') return (await target.db.query(sql, values)).rows;
  const [rows] = await target.db.query(sql, values);
  return Array.isArray(rows) ? (rows as OrmRow[]) : [];
}

/** What every ORM adapter module exports, as the suite calls it. */
export interface OrmAdapterModule<Db, Tx> {
  atomicDecrement(db: Db, options: OrmAtomicDecrementOptions): Promise<OrmAtomicResult>;
  atomicIncrement(db: Db, options: OrmAtomicIncrementOptions): Promise<OrmAtomicResult>;
  compareAndSet(db: Db, options: OrmCompareAndSetOptions): Promise<{ readonly applied: boolean }>;
  optimisticUpdate(db: Db, options: OrmOptimisticUpdateOptions): Promise<OrmOptimisticUpdateResult>;
  versionedRows(db: Db, options: { readonly table: string }): VersionedRows<OrmKey, OrmRow>;
  lockRows(tx: Tx, options: OrmLockRowsOptions): Promise<OrmRow[]>;
  transaction<T>(
    db: Db,
    fn: (tx: Tx, context: { readonly attempt: number }) => Promise<T>,
    options?: OrmTransactionOptions,
  ): Promise<T>;
}

/** A subject over an ORM adapter: the same calls, on `db`, its transactions through the adapter. */
export function adapterSubject<Db, Tx>(
  name: string,
  dialect: 'postgres' | 'mysql',
  adapter: OrmAdapterModule<Db, Tx>,
  db: Db,
  target: (on: Db | Tx) => SqlTarget,
): RelationalSubject {
  return {
    name,
    dialect,
    sql: (text, values) => runOn(target(db), text, values),
    atomicDecrement: (o) => adapter.atomicDecrement(db, o),
    atomicIncrement: (o) => adapter.atomicIncrement(db, o),
    compareAndSet: (o) => adapter.compareAndSet(db, o),
    optimisticUpdate: (o) => adapter.optimisticUpdate(db, o),
    versionedRows: (o) => adapter.versionedRows(db, o),
    transaction: (fn, options) =>
      adapter.transaction(
        db,
        (tx, { attempt }) =>
          fn({
            attempt,
            lockRows: (o) => adapter.lockRows(tx, o),
            sql: (text, values) => runOn(target(tx), text, values),
          }),
        options,
      ),
  };
}

const count = (outcomes: readonly OrmAtomicResult[], applied: boolean) =>
  outcomes.filter((o) => o.applied === applied).length;

/** The suite for one subject; `subject` is called once the file's `before` opened the servers. */
export function relationalContract(name: string, subject: () => RelationalSubject): void {
  {
    describe(`relational contract: ${name}`, () => {
      let s: RelationalSubject;
      let t: string;
      before(async () => {
        s = subject();
        t = `rc_${s.name.replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`;
        await s.sql(
          `CREATE TABLE ${t}_items (id int PRIMARY KEY, stock int NOT NULL, used int NOT NULL DEFAULT 0, cap int NOT NULL DEFAULT 0, version int NOT NULL DEFAULT 0, note varchar(40) NULL)`,
        );
        await s.sql(`CREATE TABLE ${t}_accounts (id int PRIMARY KEY, balance int NOT NULL)`);
      });
      const fresh = async (id: number, stock: number, cap = 0) => {
        await s.sql(`DELETE FROM ${t}_items WHERE id = ?`, [id]);
        await s.sql(`INSERT INTO ${t}_items (id, stock, cap) VALUES (?, ?, ?)`, [id, stock, cap]);
      };
      const item = async (id: number) =>
        (await s.sql(`SELECT * FROM ${t}_items WHERE id = ?`, [id]))[0] as OrmRow;

      it('inventory: 100 concurrent decrements of 60 units sell exactly 60; a naive read-then-write through the same connection oversells (control)', async () => {
        await fresh(1, 60);
        const outcomes = await Promise.all(
          Array.from({ length: 100 }, () =>
            s.atomicDecrement({
              table: `${t}_items`,
              key: { id: 1 },
              column: 'stock',
              amount: 1,
            }),
          ),
        );
        assert.equal(count(outcomes, true), 60);
        for (const o of outcomes) if (!o.applied) assert.equal(o.reason, 'limit');
        assert.equal(Number((await item(1)).stock), 0);
        const values = outcomes.flatMap((o) => (o.applied ? [Number(o.row.stock)] : []));
        assert.deepEqual(
          [...values].sort((a, b) => a - b),
          Array.from({ length: 60 }, (_, i) => i),
        );

        await fresh(2, 60);
        let sold = 0;
        await Promise.all(
          Array.from({ length: 100 }, async () => {
            const [row] = await s.sql(`SELECT stock FROM ${t}_items WHERE id = ?`, [2]);
            const stock = Number(row?.stock);
            if (stock <= 0) return;
            await s.sql(`UPDATE ${t}_items SET stock = ? WHERE id = ?`, [stock - 1, 2]);
            sold += 1;
          }),
        );
        assert.notEqual(sold, 60 - Number((await item(2)).stock), 'the naive path lost updates');
      });

      it('a missing row is not-found; the floor holds for larger amounts', async () => {
        await fresh(3, 5);
        const missing = await s.atomicDecrement({
          table: `${t}_items`,
          key: { id: 999 },
          column: 'stock',
          amount: 1,
        });
        assert.deepEqual(missing, { applied: false, reason: 'not-found' });
        const tooMuch = await s.atomicDecrement({
          table: `${t}_items`,
          key: { id: 3 },
          column: 'stock',
          amount: 6,
        });
        assert.equal(tooMuch.applied, false);
        assert.equal(tooMuch.applied === false && tooMuch.reason, 'limit');
      });

      it('a coupon capped by its own column: 150 concurrent redemptions use exactly the cap', async () => {
        await fresh(4, 0, 105);
        const outcomes = await Promise.all(
          Array.from({ length: 150 }, () =>
            s.atomicIncrement({
              table: `${t}_items`,
              key: { id: 4 },
              column: 'used',
              amount: 1,
              ceilingColumn: 'cap',
            }),
          ),
        );
        assert.equal(count(outcomes, true), 105);
        assert.equal(Number((await item(4)).used), 105);
      });

      it('100 concurrent optimistic updates each land exactly once: counter 100, version 100', async () => {
        await fresh(5, 0);
        const results = await Promise.all(
          Array.from({ length: 100 }, () =>
            s.optimisticUpdate({
              table: `${t}_items`,
              key: { id: 5 },
              maxAttempts: 2000,
              baseDelayMs: 1,
              maxDelayMs: 20,
              update: (row) => ({ stock: Number(row.stock) + 1 }),
            }),
          ),
        );
        assert.ok(results.every((r) => r.applied));
        assert.ok(
          results.some((r) => r.attempts > 1),
          'the updates really contended',
        );
        const row = await item(5);
        assert.equal(Number(row.stock), 100);
        assert.equal(Number(row.version), 100);
      });

      it('compareAndSet with a stale version writes nothing; a lost race past maxAttempts carries the current row; a missing row is RowNotFoundError', async () => {
        await fresh(6, 10);
        assert.deepEqual(
          await s.compareAndSet({
            table: `${t}_items`,
            key: { id: 6 },
            expectedVersion: 0,
            set: { note: 'first' },
          }),
          { applied: true },
        );
        assert.deepEqual(
          await s.compareAndSet({
            table: `${t}_items`,
            key: { id: 6 },
            expectedVersion: 0,
            set: { note: 'stale' },
          }),
          { applied: false },
        );
        assert.equal((await item(6)).note, 'first');

        const conflict = await s
          .optimisticUpdate({
            table: `${t}_items`,
            key: { id: 6 },
            maxAttempts: 2,
            baseDelayMs: 1,
            update: async (row) => {
              // Someone else writes between this read and the write.
              await s.sql(`UPDATE ${t}_items SET version = version + 1, note = ? WHERE id = ?`, [
                'other',
                6,
              ]);
              return { note: `mine-${String(row.version)}` };
            },
          })
          .then(
            () => assert.fail('expected a conflict'),
            (error: unknown) => error,
          );
        assert.ok(conflict instanceof OptimisticConflictError, String(conflict));
        assert.equal(conflict.current?.note, 'other');
        assert.equal(Number(conflict.current?.version), 3);
        await assert.rejects(
          s.optimisticUpdate({
            table: `${t}_items`,
            key: { id: 404 },
            update: () => ({ note: 'x' }),
          }),
          RowNotFoundError,
        );
      });

      it('bank: 100 concurrent transfers locking rows in key order conserve the money and never overdraw', async () => {
        await s.sql(`DELETE FROM ${t}_accounts`);
        for (let id = 1; id <= 5; id += 1)
          await s.sql(`INSERT INTO ${t}_accounts (id, balance) VALUES (?, 100)`, [id]);
        let refused = 0;
        await Promise.all(
          Array.from({ length: 100 }, (_, i) => {
            const from = (i % 5) + 1;
            const to = ((i * 3 + 1) % 5) + 1 === from ? (from % 5) + 1 : ((i * 3 + 1) % 5) + 1;
            const amount = 10 + (i % 4) * 15;
            return s.transaction(async (tx) => {
              const rows = await tx.lockRows({
                table: `${t}_accounts`,
                key: { id: Math.min(from, to) },
              });
              const more = await tx.lockRows({
                table: `${t}_accounts`,
                key: { id: Math.max(from, to) },
              });
              const source = [...rows, ...more].find((r) => Number(r.id) === from);
              if (Number(source?.balance) < amount) {
                refused += 1;
                return;
              }
              await tx.sql(`UPDATE ${t}_accounts SET balance = balance - ? WHERE id = ?`, [
                amount,
                from,
              ]);
              await tx.sql(`UPDATE ${t}_accounts SET balance = balance + ? WHERE id = ?`, [
                amount,
                to,
              ]);
            });
          }),
        );
        const accounts = await s.sql(`SELECT balance FROM ${t}_accounts`);
        assert.equal(
          accounts.reduce((sum, a) => sum + Number(a.balance), 0),
          500,
        );
        assert.ok(accounts.every((a) => Number(a.balance) >= 0));
        assert.ok(refused > 0, 'some transfers met an empty account');
      });

      it('a real deadlock between two transactions is re-run: both transfers land', async () => {
        await s.sql(`DELETE FROM ${t}_accounts`);
        await s.sql(`INSERT INTO ${t}_accounts (id, balance) VALUES (1, 100), (2, 100)`);
        const barrier = createBarrier(2);
        let retries = 0;
        const transfer = (first: number, second: number) =>
          s.transaction(
            async (tx) => {
              await tx.lockRows({ table: `${t}_accounts`, key: { id: first } });
              if (tx.attempt === 1) await barrier.arrive();
              await tx.sql(`UPDATE ${t}_accounts SET balance = balance - 10 WHERE id = ?`, [
                second,
              ]);
              await tx.sql(`UPDATE ${t}_accounts SET balance = balance + 10 WHERE id = ?`, [first]);
            },
            { maxAttempts: 5, onRetry: () => (retries += 1) },
          );
        await Promise.all([transfer(1, 2), transfer(2, 1)]);
        assert.ok(retries >= 1, 'a deadlock was detected and the victim re-run');
        const balances = await s.sql(`SELECT balance FROM ${t}_accounts ORDER BY id`);
        assert.deepEqual(
          balances.map((b) => Number(b.balance)),
          [100, 100],
        );
      });

      it('NOWAIT on a held row fails at once with a lock timeout; SKIP LOCKED returns the free rows', async () => {
        await fresh(7, 1);
        await fresh(8, 1);
        const held = createBarrier(2);
        const done = createBarrier(2);
        const holder = s.transaction(async (tx) => {
          await tx.lockRows({ table: `${t}_items`, key: { id: 7 } });
          await held.arrive();
          await done.arrive();
        });
        await held.arrive();
        try {
          await assert.rejects(
            s.transaction(
              (tx) => tx.lockRows({ table: `${t}_items`, key: { id: 7 }, wait: 'nowait' }),
              { maxAttempts: 1 },
            ),
            LockAcquireTimeoutError,
          );
          const free = await s.transaction(async (tx) => [
            ...(await tx.lockRows({ table: `${t}_items`, key: { id: 7 }, wait: 'skip locked' })),
            ...(await tx.lockRows({ table: `${t}_items`, key: { id: 8 }, wait: 'skip locked' })),
          ]);
          assert.deepEqual(
            free.map((r) => Number(r.id)),
            [8],
          );
        } finally {
          void done.arrive();
          await holder;
        }
      });

      it('a failing callback leaves nothing behind, and is not re-run', async () => {
        await fresh(9, 10);
        let runs = 0;
        await assert.rejects(
          s.transaction(async (tx) => {
            runs += 1;
            await tx.sql(`UPDATE ${t}_items SET stock = 0 WHERE id = ?`, [9]);
            throw new Error('business rule');
          }),
          /business rule/,
        );
        assert.equal(runs, 1);
        assert.equal(Number((await item(9)).stock), 10);
      });

      it('versioned rows for conditional writes: 50 editors of one version, exactly one update lands; creation happens once', async () => {
        await fresh(11, 1);
        const docs = s.versionedRows({ table: `${t}_items` });
        const read = await docs.read({ id: 11 });
        assert.equal(read?.version, '0');
        const outcomes = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            docs.update({ id: 11 }, '0', { note: `editor ${i}` }),
          ),
        );
        assert.equal(outcomes.filter((o) => o.applied).length, 1);
        for (const o of outcomes) if (!o.applied) assert.equal(o.current?.version, '1');
        const created = await Promise.all(
          Array.from({ length: 20 }, (_, i) => docs.create({ id: 12 }, { id: 12, stock: i })),
        );
        assert.equal(created.filter((c) => c.created).length, 1);
        assert.equal((await docs.delete({ id: 12 }, '7')).applied, false);
        assert.equal((await docs.delete({ id: 12 }, '1')).applied, true);
      });

      it('a version column that does not hold integers is a clear error before anything is written', async () => {
        await s.sql(`CREATE TABLE ${t}_docs (id int PRIMARY KEY, body varchar(20), v varchar(10))`);
        await s.sql(`INSERT INTO ${t}_docs (id, body, v) VALUES (1, 'first', 'v1')`);
        let called = false;
        await assert.rejects(
          s.optimisticUpdate({
            table: `${t}_docs`,
            key: { id: 1 },
            versionColumn: 'v',
            update: () => {
              called = true;
              return { body: 'second' };
            },
          }),
          (error: unknown) =>
            error instanceof InvalidArgumentError && /version column "v"/.test(error.message),
        );
        assert.equal(called, false);
        const [row] = await s.sql(`SELECT body, v FROM ${t}_docs WHERE id = 1`);
        assert.deepEqual({ ...row }, { body: 'first', v: 'v1' });
      });

      it('identifiers with injection attempts are quoted: the server refuses an unknown table, nothing is dropped', async () => {
        await fresh(10, 3);
        const hostile = `${t}_items; DROP TABLE ${t}_accounts; --`;
        await assert.rejects(
          s.atomicDecrement({ table: hostile, key: { id: 10 }, column: 'stock', amount: 1 }),
          (error: unknown) => error instanceof Error && !(error instanceof TypeError),
        );
        await assert.rejects(
          s.compareAndSet({
            table: `${t}_items`,
            key: { id: 10 },
            versionColumn: 'version = 0 OR 1 = 1; --',
            expectedVersion: 0,
            set: { note: 'x' },
          }),
        );
        assert.equal((await s.sql(`SELECT count(*) AS n FROM ${t}_accounts`)).length, 1);
        assert.equal(Number((await item(10)).stock), 3);
        assert.equal((await item(10)).note, null);
      });
    });
  }
}
