/**
 * `raceguard/kysely`: the relational fixes through Kysely (an optional
 * peer), on PostgreSQL and MySQL / MariaDB. Every helper takes the `Kysely`
 * instance or a Kysely `Transaction` and runs raceguard's statements on its
 * connection, inside the transaction when given one: atomic conditional
 * updates, compare-and-set and optimistic updates on a version column, row
 * locks, and a transaction wrapper that re-runs the whole callback on
 * serialization failures and deadlocks.
 *
 * @packageDocumentation
 */
import {
  CompiledQuery,
  MysqlAdapter,
  PostgresAdapter,
  type Kysely,
  type Transaction,
} from 'kysely';
import { InvalidArgumentError } from '../core/errors.js';
import { assertFunction } from '../core/validate.js';
import { bridgeTarget } from '../orm/bridge.js';
import * as relational from '../orm/relational.js';
import type {
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
} from '../orm/relational.js';

export type {
  OrmAtomicDecrementOptions,
  OrmAtomicIncrementOptions,
  OrmAtomicResult,
  OrmCompareAndSetOptions,
  OrmIsolationLevel,
  OrmKey,
  OrmLockRowsOptions,
  OrmOptimisticUpdateOptions,
  OrmOptimisticUpdateResult,
  OrmRow,
  OrmTableName,
  OrmTransactionOptions,
  SqlTarget,
} from '../orm/relational.js';
export { isRetryableSqlError } from '../orm/relational.js';
export { OptimisticConflictError, RowNotFoundError, RetryExhaustedError } from '../core/errors.js';

function assertKysely(db: unknown): asserts db is Kysely<unknown> {
  if (
    typeof db !== 'object' ||
    db === null ||
    typeof (db as Partial<Kysely<unknown>>).executeQuery !== 'function' ||
    typeof (db as Partial<Kysely<unknown>>).getExecutor !== 'function'
  ) {
    throw new InvalidArgumentError('db', 'a Kysely instance or Kysely transaction', db);
  }
}

/**
 * The Kysely instance (or transaction) as a {@link SqlTarget}: statements
 * run through `executeQuery`, so Kysely's plugins and logging see them.
 * Throws `InvalidArgumentError` for a dialect other than PostgreSQL or MySQL.
 *
 * @example
 * ```ts
 * const target = kyselyTarget(db); // for raceguard functions that take a SqlTarget
 * ```
 */
export function kyselyTarget<DB>(db: Kysely<DB>): SqlTarget {
  const known = targets.get(db);
  if (known !== undefined) return known;
  assertKysely(db);
  const adapter = db.getExecutor().adapter;
  const dialect =
    adapter instanceof PostgresAdapter
      ? 'postgres'
      : adapter instanceof MysqlAdapter
        ? 'mysql'
        : relational.unsupportedDialect(
            'db',
            'a Kysely instance on PostgreSQL or MySQL / MariaDB',
            adapter.constructor.name,
          );
  const target = bridgeTarget(dialect, async (text, values) => {
    const result = await db.executeQuery(CompiledQuery.raw(text, [...values]));
    return {
      rows: result.rows as OrmRow[],
      affectedRows:
        result.numAffectedRows === undefined ? undefined : Number(result.numAffectedRows),
      changedRows: result.numChangedRows === undefined ? undefined : Number(result.numChangedRows),
      insertId: result.insertId === undefined ? undefined : Number(result.insertId),
    };
  });
  targets.set(db, target);
  return target;
}

/** One target per Kysely instance or transaction: the dialect is looked up once. */
const targets = new WeakMap<object, SqlTarget>();

/**
 * Takes `amount` from a counter in one guarded statement, never below
 * `floor` (default 0): stock, balances, quotas.
 *
 * @example
 * ```ts
 * const r = await atomicDecrement(db, { table: 'products', key: { id: 1 }, column: 'stock', amount: 1 });
 * if (!r.applied) throw new SoldOut();
 * ```
 */
export function atomicDecrement<DB>(
  db: Kysely<DB>,
  options: OrmAtomicDecrementOptions,
): Promise<OrmAtomicResult> {
  return relational.atomicDecrement(kyselyTarget(db), options);
}

/**
 * Adds `amount` to a counter in one guarded statement, never above
 * `ceiling` or the row's `ceilingColumn` (a coupon's cap).
 *
 * @example
 * ```ts
 * await atomicIncrement(db, { table: 'coupons', key: { code }, column: 'used', amount: 1, ceilingColumn: 'cap' });
 * ```
 */
export function atomicIncrement<DB>(
  db: Kysely<DB>,
  options: OrmAtomicIncrementOptions,
): Promise<OrmAtomicResult> {
  return relational.atomicIncrement(kyselyTarget(db), options);
}

/**
 * One version-checked write (`UPDATE ... SET ..., version = version + 1
 * WHERE key AND version = ?`); `applied` is false when someone else wrote
 * the row since it was read.
 *
 * @example
 * ```ts
 * const { applied } = await compareAndSet(db, { table: 'docs', key: { id }, expectedVersion: 3, set: { body } });
 * ```
 */
export function compareAndSet<DB>(
  db: Kysely<DB>,
  options: OrmCompareAndSetOptions,
): Promise<{ readonly applied: boolean }> {
  return relational.compareAndSet(kyselyTarget(db), options);
}

/**
 * Optimistic locking: read the row, compute changes, write them only if the
 * version is unchanged; on a lost race re-read and retry (bounded, jittered).
 * Throws `OptimisticConflictError` carrying the current row when attempts
 * run out, `RowNotFoundError` when no row matches.
 *
 * @example
 * ```ts
 * await optimisticUpdate(db, {
 *   table: 'products', key: { id: 1 },
 *   update: (row) => (Number(row.stock) > 0 ? { stock: Number(row.stock) - 1 } : null),
 * });
 * ```
 */
export function optimisticUpdate<DB, R extends OrmRow = OrmRow>(
  db: Kysely<DB>,
  options: OrmOptimisticUpdateOptions<R>,
): Promise<OrmOptimisticUpdateResult<R>> {
  return relational.optimisticUpdate(kyselyTarget(db), options);
}

/**
 * Locks rows for the rest of a Kysely transaction (`FOR UPDATE`, `share`,
 * `NOWAIT`, `SKIP LOCKED`) and returns them. Refuses a non-transaction
 * instance: the lock would be released as soon as the statement ends.
 *
 * @example
 * ```ts
 * await transaction(db, async (trx) => {
 *   const [account] = await lockRows(trx, { table: 'accounts', key: { id: 1 } });
 * });
 * ```
 */
export function lockRows<DB>(trx: Transaction<DB>, options: OrmLockRowsOptions): Promise<OrmRow[]> {
  assertKysely(trx);
  if (!trx.isTransaction) {
    throw new InvalidArgumentError(
      'trx',
      'a Kysely transaction (a lock outside one ends with its statement)',
      'a Kysely instance',
    );
  }
  return relational.lockRows(kyselyTarget(trx), options);
}

/**
 * Runs `fn` in a Kysely transaction (`db.transaction()`, at `isolation`
 * when given) and re-runs the whole callback, with a fresh transaction, on
 * serialization failures and deadlocks (PostgreSQL 40001 / 40P01, MySQL
 * 1213 / 1205 / 1020): bounded attempts, capped jittered backoff, `signal`
 * and `deadlineMs` honoured between attempts. `fn` must be safe to re-run.
 *
 * @example
 * ```ts
 * await transaction(db, async (trx) => {
 *   const from = await trx.selectFrom('accounts').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
 *   await trx.updateTable('accounts').set({ balance: from.balance - 10 }).where('id', '=', 1).execute();
 * }, { isolation: 'serializable' });
 * ```
 */
export function transaction<DB, T>(
  db: Kysely<DB>,
  fn: (trx: Transaction<DB>, context: { readonly attempt: number }) => Promise<T>,
  options: OrmTransactionOptions = {},
): Promise<T> {
  assertKysely(db);
  assertFunction('fn', fn);
  relational.assertTransactionOptions(options);
  if (db.isTransaction) {
    throw new InvalidArgumentError(
      'db',
      'the Kysely instance, not a transaction (a nested transaction cannot be re-run on its own)',
      'a Kysely transaction',
    );
  }
  return relational.retryTransaction((attempt) => {
    const builder = db.transaction();
    const configured =
      options.isolation === undefined ? builder : builder.setIsolationLevel(options.isolation);
    return configured.execute((trx) => fn(trx, { attempt }));
  }, options);
}
