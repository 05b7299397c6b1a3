/**
 * `raceguard/drizzle`: the relational fixes through Drizzle ORM (an
 * optional peer), on PostgreSQL (node-postgres or postgres.js) and MySQL /
 * MariaDB (mysql2). Every helper takes the Drizzle database or a Drizzle
 * transaction and runs raceguard's statements through its `execute`, inside
 * the transaction when given one: atomic conditional updates,
 * compare-and-set and optimistic updates on a version column, row locks,
 * and a transaction wrapper that re-runs the whole callback on
 * serialization failures and deadlocks.
 *
 * @packageDocumentation
 */
import { DrizzleQueryError, is, sql, type SQL, type SQLChunk } from 'drizzle-orm';
import { MySqlDatabase, MySqlTransaction } from 'drizzle-orm/mysql-core';
import { PgDatabase, PgTransaction } from 'drizzle-orm/pg-core';
import { InvalidArgumentError } from '../core/errors.js';
import { assertFunction } from '../core/validate.js';
import { bridgeTarget, cachedTargets, type BridgeResult } from '../orm/bridge.js';
import { splitPlaceholders } from '../orm/placeholders.js';
import * as relational from '../orm/relational.js';

export * from '../orm/exports.js';

/**
 * What raceguard needs of a Drizzle database or transaction (`drizzle(...)`
 * from `drizzle-orm/node-postgres`, `drizzle-orm/postgres-js` or
 * `drizzle-orm/mysql2`, or the `tx` of its `transaction`).
 */
export interface DrizzleDatabase {
  execute(query: SQL): PromiseLike<unknown>;
}

/** A Drizzle database that can open transactions. */
export interface DrizzleTransactional<Tx> extends DrizzleDatabase {
  transaction<T>(
    fn: (tx: Tx) => Promise<T>,
    config?: { isolationLevel?: relational.OrmIsolationLevel },
  ): Promise<T>;
}

function dialectOf(db: unknown): 'postgres' | 'mysql' {
  if (is(db, PgDatabase)) return 'postgres';
  if (is(db, MySqlDatabase)) return 'mysql';
  throw new InvalidArgumentError(
    'db',
    'a Drizzle database or transaction on PostgreSQL or MySQL / MariaDB',
    db,
  );
}

const isTransaction = (db: unknown): boolean => is(db, PgTransaction) || is(db, MySqlTransaction);

/** Drizzle wraps driver failures in `DrizzleQueryError`; raceguard classifies the driver's own. */
function unwrap(error: unknown): unknown {
  return error instanceof DrizzleQueryError && error.cause !== undefined ? error.cause : error;
}

function resultOf(dialect: 'postgres' | 'mysql', raw: unknown): BridgeResult {
  if (dialect === 'mysql') {
    const [first] = raw as [unknown, unknown];
    if (Array.isArray(first))
      return { rows: first as relational.OrmRow[], affectedRows: undefined };
    const header = first as { affectedRows: number; changedRows?: number; insertId: number };
    return {
      rows: [],
      affectedRows: header.affectedRows,
      changedRows: header.changedRows,
      insertId: header.insertId,
    };
  }
  if (Array.isArray(raw)) {
    // postgres.js: the rows, with the command's row count as `count`.
    const count = (raw as { count?: unknown }).count;
    return {
      rows: raw as relational.OrmRow[],
      affectedRows: typeof count === 'number' ? count : undefined,
    };
  }
  const result = raw as { rows: relational.OrmRow[]; rowCount: number | null };
  return { rows: result.rows, affectedRows: result.rowCount ?? undefined };
}

/**
 * The Drizzle database (or transaction) as a {@link relational.SqlTarget}: each
 * statement is rebuilt with Drizzle's `sql` (values bound as parameters,
 * never spliced) and run through `execute`.
 *
 * @example
 * ```ts
 * const target = drizzleTarget(db);
 * ```
 */
export const drizzleTarget: (db: DrizzleDatabase) => relational.SqlTarget = cachedTargets(
  (db: DrizzleDatabase): relational.SqlTarget => {
    const dialect = dialectOf(db);
    const target = bridgeTarget(dialect, async (text, values) => {
      const { pieces, indexes } = splitPlaceholders(text, dialect);
      const chunks: SQLChunk[] = [sql.raw(pieces[0] ?? '')];
      indexes.forEach((index, i) => {
        chunks.push(sql.param(values[index]), sql.raw(pieces[i + 1] ?? ''));
      });
      try {
        return resultOf(dialect, await db.execute(sql.join(chunks)));
      } catch (error) {
        throw unwrap(error);
      }
    });
    return target;
  },
);

/** The helpers of every adapter (see {@link relational.OrmHelpers}), on drizzle's database objects. */
const helpers: relational.OrmHelpers<DrizzleDatabase> = relational.ormHelpers(drizzleTarget);
export const { atomicDecrement, atomicIncrement, compareAndSet } = helpers;
export const { optimisticUpdate, versionedRows } = helpers;

/**
 * Locks rows for the rest of a Drizzle transaction and returns them.
 * Refuses a database that is not a transaction.
 *
 * @example
 * ```ts
 * await transaction(db, async (tx) => {
 *   const [account] = await lockRows(tx, { table: 'accounts', key: { id: 1 }, wait: 'nowait' });
 * });
 * ```
 */
export const lockRows: (
  tx: DrizzleDatabase,
  options: relational.OrmLockRowsOptions,
) => Promise<relational.OrmRow[]> = relational.lockRowsInTransaction(drizzleTarget, isTransaction, {
  argument: 'tx',
  expected: 'a Drizzle transaction (a lock outside one ends with its statement)',
  received: 'a Drizzle database',
});

/**
 * Runs `fn` in `db.transaction(...)` (at `isolation` when given) and re-runs
 * the whole callback, with a fresh transaction, on serialization failures
 * and deadlocks (PostgreSQL 40001 / 40P01, MySQL 1213 / 1205 / 1020).
 * `fn` must be safe to re-run.
 *
 * @example
 * ```ts
 * await transaction(db, async (tx) => {
 *   await tx.update(accounts).set({ balance: sql`${accounts.balance} - 10` }).where(eq(accounts.id, 1));
 * }, { isolation: 'serializable' });
 * ```
 */
export async function transaction<Tx, T>(
  db: DrizzleTransactional<Tx>,
  fn: (tx: Tx, context: { readonly attempt: number }) => Promise<T>,
  options: relational.OrmTransactionOptions = {},
): Promise<T> {
  dialectOf(db);
  assertFunction('fn', fn);
  relational.assertTransactionOptions(options);
  if (isTransaction(db)) {
    throw new InvalidArgumentError(
      'db',
      'the Drizzle database, not a transaction (a nested transaction cannot be re-run on its own)',
      'a Drizzle transaction',
    );
  }
  return relational.retryTransaction(async (attempt) => {
    try {
      return await db.transaction(
        (tx) => fn(tx, { attempt }),
        options.isolation === undefined ? undefined : { isolationLevel: options.isolation },
      );
    } catch (error) {
      throw unwrap(error);
    }
  }, options);
}
