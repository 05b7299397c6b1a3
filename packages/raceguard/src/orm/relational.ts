/**
 * The relational fixes spoken through an ORM: each adapter (Kysely, Drizzle,
 * TypeORM) turns the ORM's database or transaction object into a
 * {@link SqlTarget}, a driver-shaped view that runs parameterised SQL on the
 * ORM's own connection (inside its transaction when given one), and these
 * functions run the same audited statements as `raceguard/postgres` and
 * `raceguard/mysql` through it. No driver is imported here.
 */
import { InvalidArgumentError, rejection } from '../core/errors.js';
import { LockAcquireTimeoutError } from '../core/lock.js';
import type { VersionedRows } from '../core/versioned-store.js';
import { retry } from '../core/retry.js';
import { RETRY_POLICY_OPTIONS, retryOptionsOf, type RetryPolicy } from '../core/retry-policy.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import * as my from '../mysql/index.js';
import * as pg from '../postgres/index.js';

/** A SQL dialect the ORM adapters support. */
export type SqlDialect = 'postgres' | 'mysql';

/**
 * The ORM's connection seen as a driver: `pg`-shaped for PostgreSQL (a
 * transaction-like object, so row locks accept it), `mysql2`-shaped for
 * MySQL and MariaDB.
 */
export type SqlTarget =
  | { readonly dialect: 'postgres'; readonly db: pg.Transaction }
  | { readonly dialect: 'mysql'; readonly db: my.MysqlQueryable };

// The dialect-neutral shapes are those raceguard/mysql already defines (the
// PostgreSQL ones are the same with a few PostgreSQL-only options): the ORM
// adapters name them once here rather than copy them.

/** A table name, optionally with its schema (PostgreSQL) or database (MySQL): `['shop', 'products']`. */
export type OrmTableName = my.MysqlTableName;

/** Equality conditions identifying rows, e.g. `{ id: 42 }`. */
export type OrmKey = my.MysqlKey;

/** A row as the driver returns it. */
export type OrmRow = my.MysqlRow;

/** Result of {@link atomicDecrement} and {@link atomicIncrement}: `applied` with the new value, or `limit` / `not-found`. */
export type OrmAtomicResult = my.MysqlAtomicResult;

/** Options of {@link atomicDecrement}: `table`, `key`, `column`, `amount`, `floor` (default 0). */
export type OrmAtomicDecrementOptions = my.MysqlAtomicDecrementOptions;

/** Options of {@link atomicIncrement}: `table`, `key`, `column`, `amount`, `ceiling` and / or `ceilingColumn`. */
export type OrmAtomicIncrementOptions = my.MysqlAtomicIncrementOptions;

/** Options of {@link compareAndSet}: `table`, `key`, `versionColumn` (default 'version'), `expectedVersion`, `set`. */
export type OrmCompareAndSetOptions = my.MysqlCompareAndSetOptions;

/** Options of {@link optimisticUpdate}: `table`, `key`, `versionColumn`, `update`, and the retry policy. */
export type OrmOptimisticUpdateOptions<R extends OrmRow = OrmRow> =
  my.MysqlOptimisticUpdateOptions<R>;

/** Result of {@link optimisticUpdate}: `applied` (false when `update` returned null), the row, the attempts. */
export type OrmOptimisticUpdateResult<R extends OrmRow = OrmRow> =
  my.MysqlOptimisticUpdateResult<R>;

/**
 * Options of {@link lockRows}, the lock modes and waits both dialects have:
 * `table`, `key`, `mode` ('update' or 'share', default 'update'), `wait`
 * ('wait', 'nowait' or 'skip locked', default 'wait').
 */
export type OrmLockRowsOptions = my.MysqlLockRowsOptions;

const LOCK_OPTIONS = new Set(['table', 'key', 'mode', 'wait']);

/** Takes `amount` from a counter in one guarded statement, never below `floor`. */
export function atomicDecrement(
  target: SqlTarget,
  options: OrmAtomicDecrementOptions,
): Promise<OrmAtomicResult> {
  return target.dialect === 'postgres'
    ? pg.atomicDecrement(target.db, { ...options, prepare: false })
    : my.atomicDecrement(target.db, options);
}

/** Adds `amount` to a counter in one guarded statement, never above its ceiling. */
export function atomicIncrement(
  target: SqlTarget,
  options: OrmAtomicIncrementOptions,
): Promise<OrmAtomicResult> {
  return target.dialect === 'postgres'
    ? pg.atomicIncrement(target.db, { ...options, prepare: false })
    : my.atomicIncrement(target.db, options);
}

/** One version-checked write; `applied` is false when the version moved (or the row is gone). */
export async function compareAndSet(
  target: SqlTarget,
  options: OrmCompareAndSetOptions,
): Promise<{ readonly applied: boolean }> {
  const { applied } =
    target.dialect === 'mysql'
      ? await my.compareAndSet(target.db, options)
      : await pg.compareAndSet(target.db, options);
  return { applied };
}

/** Read, compute, version-checked write; re-read and retry on a lost race. */
export function optimisticUpdate<R extends OrmRow>(
  target: SqlTarget,
  options: OrmOptimisticUpdateOptions<R>,
): Promise<OrmOptimisticUpdateResult<R>> {
  return target.dialect === 'postgres'
    ? pg.optimisticUpdate(target.db, options)
    : my.optimisticUpdate(target.db, options);
}

/** `SELECT * ... FOR UPDATE` (or `share`, `NOWAIT`, `SKIP LOCKED`) inside the ORM's transaction. */
export function lockRows(target: SqlTarget, options: OrmLockRowsOptions): Promise<OrmRow[]> {
  // raceguard/mysql validates its own options; on PostgreSQL only the ones both dialects have.
  if (target.dialect === 'mysql') return my.lockRows(target.db, options);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, LOCK_OPTIONS);
  return pg.lockRows(target.db, options);
}

/** SQLSTATEs, MySQL error numbers and Prisma codes after which a whole transaction may be re-run. */
const RETRYABLE_CODES = new Set(['40001', '40P01', 'P2034']);
const RETRYABLE_ERRNOS = new Set([1213, 1205, 1020]);

/**
 * `true` for a failure after which re-running the whole transaction is safe
 * and likely to succeed: a serialization failure (SQLSTATE 40001), a
 * PostgreSQL deadlock (40P01), InnoDB's deadlock (1213) and lock wait
 * timeout (1205), MariaDB's "record has changed" (1020), Prisma's P2034
 * (and its P2010 carrying one of those codes from a driver adapter).
 * Follows `cause` and TypeORM's `driverError`, so an error wrapped by an ORM
 * or by raceguard is recognised. A row lock that was asked not to wait
 * (`lockRows` with `nowait`, which MariaDB reports as 1205) is final: the
 * caller chose to fail fast.
 *
 * @example
 * ```ts
 * await retry(() => db.transaction().execute(work), { isRetryable: isRetryableSqlError });
 * ```
 */
export function isRetryableSqlError(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth < 6 && typeof current === 'object' && current !== null; depth += 1) {
    if (current instanceof LockAcquireTimeoutError) return false;
    const { code, errno, sqlState, driverError, cause, meta } = current as Record<string, unknown>;
    if (typeof code === 'string' && RETRYABLE_CODES.has(code)) return true;
    if (typeof sqlState === 'string' && sqlState === '40001') return true;
    if (typeof errno === 'number' && RETRYABLE_ERRNOS.has(errno)) return true;
    // Prisma's driver adapters: the server's code as `originalCode` (a SQLSTATE or a MySQL number).
    const original = (meta as { driverAdapterError?: { cause?: { originalCode?: unknown } } })
      ?.driverAdapterError?.cause?.originalCode;
    if (
      typeof original === 'string' &&
      (RETRYABLE_CODES.has(original) || RETRYABLE_ERRNOS.has(Number(original)))
    )
      return true;
    current = driverError ?? cause;
  }
  return false;
}

/** The isolation levels the ORM transaction wrappers accept. */
export type OrmIsolationLevel =
  'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable';

/** Options of the ORM adapters' `transaction`. */
export interface OrmTransactionOptions extends RetryPolicy {
  /** @default the server's */
  readonly isolation?: OrmIsolationLevel;
}

const ISOLATIONS: readonly OrmIsolationLevel[] = [
  'read uncommitted',
  'read committed',
  'repeatable read',
  'serializable',
];

const TRANSACTION_OPTIONS = new Set(['isolation', ...RETRY_POLICY_OPTIONS]);

/** Validates transaction options once, before the first attempt. */
export function assertTransactionOptions(options: OrmTransactionOptions): void {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, TRANSACTION_OPTIONS);
  if (options.isolation !== undefined && !ISOLATIONS.includes(options.isolation)) {
    throw new InvalidArgumentError('options.isolation', ISOLATIONS.join(', '), options.isolation);
  }
}

/** Rejects a dialect other than the two supported, naming what was found. */
export function unsupportedDialect(argument: string, expected: string, value: unknown): never {
  throw new InvalidArgumentError(argument, expected, value);
}

/**
 * Runs one attempt of an ORM transaction per call, re-running the whole
 * callback on the failures {@link isRetryableSqlError} names, with the
 * capped, jittered backoff of the retry policy.
 */
export function retryTransaction<T>(
  attemptOnce: (attempt: number) => Promise<T>,
  options: OrmTransactionOptions,
): Promise<T> {
  return retry(
    ({ attempt }) => attemptOnce(attempt),
    retryOptionsOf(options, isRetryableSqlError, 'transaction'),
  );
}

/**
 * The helpers every ORM adapter exports, each taking the ORM's database (or
 * transaction) object. Built once per adapter from the function that turns
 * that object into a {@link SqlTarget}.
 */
export interface OrmHelpers<Db> {
  /**
   * Takes `amount` from a counter in one guarded statement, never below
   * `floor` (default 0): stock, balances, quotas. `applied: false` says
   * `limit` (with the current row) or `not-found`.
   *
   * @example
   * ```ts
   * const r = await atomicDecrement(db, { table: 'products', key: { id: 1 }, column: 'stock', amount: 1 });
   * if (!r.applied) throw new SoldOut();
   * ```
   */
  readonly atomicDecrement: (
    db: Db,
    options: OrmAtomicDecrementOptions,
  ) => Promise<OrmAtomicResult>;
  /**
   * Adds `amount` to a counter in one guarded statement, never above
   * `ceiling` or the row's `ceilingColumn` (a coupon's cap).
   *
   * @example
   * ```ts
   * await atomicIncrement(db, { table: 'coupons', key: { code }, column: 'uses', amount: 1, ceilingColumn: 'max_uses' });
   * ```
   */
  readonly atomicIncrement: (
    db: Db,
    options: OrmAtomicIncrementOptions,
  ) => Promise<OrmAtomicResult>;
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
  readonly compareAndSet: (
    db: Db,
    options: OrmCompareAndSetOptions,
  ) => Promise<{ readonly applied: boolean }>;
  /**
   * Optimistic locking: read the row, compute changes, write them only if
   * the version is unchanged; on a lost race re-read and retry (bounded,
   * jittered). Throws `OptimisticConflictError` carrying the current row
   * when attempts run out, `RowNotFoundError` when no row matches.
   *
   * @example
   * ```ts
   * await optimisticUpdate(db, {
   *   table: 'products', key: { id: 1 },
   *   update: (row) => (Number(row.stock) > 0 ? { stock: Number(row.stock) - 1 } : null),
   * });
   * ```
   */
  readonly optimisticUpdate: <R extends OrmRow = OrmRow>(
    db: Db,
    options: OrmOptimisticUpdateOptions<R>,
  ) => Promise<OrmOptimisticUpdateResult<R>>;
  /**
   * Rows of one table as versioned resources, for `conditionalWrites` of
   * `raceguard/http` (ETag / If-Match): reads carry the version, updates
   * and deletes are refused when it moved, creation happens once.
   *
   * @example
   * ```ts
   * const documents = conditionalWrites(versionedRows(db, { table: 'documents' }));
   * sendFastify(reply, await documents.read({ id }, req.headers));
   * ```
   */
  readonly versionedRows: (
    db: Db,
    options: { readonly table: OrmTableName; readonly versionColumn?: string },
  ) => VersionedRows<OrmKey, OrmRow>;
}

/** What an adapter's `lockRows` says of a database object that is not a transaction. */
export interface OutsideTransaction {
  readonly argument: string;
  readonly expected: string;
  readonly received: string;
}

/**
 * An adapter's `lockRows`: rejects (never throws) a database object that is
 * not in a transaction, where the lock would end with its statement.
 */
export function lockRowsInTransaction<Db>(
  toTarget: (db: Db) => SqlTarget,
  inTransaction: (db: Db) => boolean,
  outside: OutsideTransaction,
): (db: Db, options: OrmLockRowsOptions) => Promise<OrmRow[]> {
  return async (db, options) => {
    const target = toTarget(db);
    if (!inTransaction(db))
      throw new InvalidArgumentError(outside.argument, outside.expected, outside.received);
    return lockRows(target, options);
  };
}

/**
 * `call` on the target of `db`; a `db` that is not a database object
 * rejects rather than throws, without a promise layer on the way through.
 */
function onTarget<Db, R>(
  toTarget: (db: Db) => SqlTarget,
  db: Db,
  call: (target: SqlTarget) => Promise<R>,
): Promise<R> {
  let target: SqlTarget;
  try {
    target = toTarget(db);
  } catch (error) {
    return rejection(error);
  }
  return call(target);
}

/** The {@link OrmHelpers} of an adapter, over its target function. */
export function ormHelpers<Db>(toTarget: (db: Db) => SqlTarget): OrmHelpers<Db> {
  return {
    atomicDecrement: (db, options) =>
      onTarget(toTarget, db, (target) => atomicDecrement(target, options)),
    atomicIncrement: (db, options) =>
      onTarget(toTarget, db, (target) => atomicIncrement(target, options)),
    compareAndSet: (db, options) =>
      onTarget(toTarget, db, (target) => compareAndSet(target, options)),
    optimisticUpdate: (db, options) =>
      onTarget(toTarget, db, (target) => optimisticUpdate(target, options)),
    versionedRows: (db, options) => {
      const target = toTarget(db);
      return target.dialect === 'postgres'
        ? pg.versionedRows(target.db, options)
        : my.versionedRows(target.db, options);
    },
  };
}
