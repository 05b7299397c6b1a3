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
  type QueryResult,
  type Transaction,
} from 'kysely';
import { InvalidArgumentError } from '../core/errors.js';
import { assertFunction } from '../core/validate.js';
import { bridgeTarget, cachedTargets } from '../orm/bridge.js';
import * as relational from '../orm/relational.js';

export * from '../orm/exports.js';

/** What raceguard calls on a Kysely instance or transaction (`Kysely<DB>` and `Transaction<DB>` fit). */
export interface KyselyDatabase {
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
  getExecutor(): { readonly adapter: object };
  readonly isTransaction: boolean;
}

function assertKysely(db: unknown): asserts db is KyselyDatabase {
  if (
    typeof db !== 'object' ||
    db === null ||
    typeof (db as Partial<KyselyDatabase>).executeQuery !== 'function' ||
    typeof (db as Partial<KyselyDatabase>).getExecutor !== 'function'
  ) {
    throw new InvalidArgumentError('db', 'a Kysely instance or Kysely transaction', db);
  }
}

/**
 * The Kysely instance (or transaction) as a {@link relational.SqlTarget}: statements
 * run through `executeQuery`, so Kysely's plugins and logging see them.
 * Throws `InvalidArgumentError` for a dialect other than PostgreSQL or MySQL.
 *
 * @example
 * ```ts
 * const target = kyselyTarget(db); // for raceguard functions that take a relational.SqlTarget
 * ```
 */
export const kyselyTarget: (db: KyselyDatabase) => relational.SqlTarget = cachedTargets(
  (db: KyselyDatabase): relational.SqlTarget => {
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
        rows: result.rows as relational.OrmRow[],
        affectedRows:
          result.numAffectedRows === undefined ? undefined : Number(result.numAffectedRows),
        changedRows:
          result.numChangedRows === undefined ? undefined : Number(result.numChangedRows),
        insertId: result.insertId === undefined ? undefined : Number(result.insertId),
      };
    });
    return target;
  },
);

/** The helpers of every adapter (see {@link relational.OrmHelpers}), on kysely's database objects. */
const helpers: relational.OrmHelpers<KyselyDatabase> = relational.ormHelpers(kyselyTarget);
export const { atomicDecrement, atomicIncrement, compareAndSet } = helpers;
export const { optimisticUpdate, versionedRows } = helpers;

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
export function lockRows<DB>(
  trx: Transaction<DB>,
  options: relational.OrmLockRowsOptions,
): Promise<relational.OrmRow[]> {
  return lockInTransaction(trx, options);
}

const lockInTransaction = relational.lockRowsInTransaction(
  kyselyTarget,
  (trx: KyselyDatabase) => trx.isTransaction,
  {
    argument: 'trx',
    expected: 'a Kysely transaction (a lock outside one ends with its statement)',
    received: 'a Kysely instance',
  },
);

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
export async function transaction<DB, T>(
  db: Kysely<DB>,
  fn: (trx: Transaction<DB>, context: { readonly attempt: number }) => Promise<T>,
  options: relational.OrmTransactionOptions = {},
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
