/**
 * The lab's database seen the same way on PostgreSQL and on MySQL / MariaDB.
 * A scenario writes its unsafe code once, as plain statements with `$1`-style
 * placeholders (what a handler of either dialect would write), and its fixes
 * with raceguard's own functions, which this module routes to
 * `raceguard/postgres` or `raceguard/mysql`: each dialect's fix runs with its
 * real semantics (MySQL judges a conditional write by rows changed, re-runs
 * transactions on InnoDB's 1213 / 1205, locks with `GET_LOCK`), not a
 * translation of the PostgreSQL one.
 */
import { InvalidArgumentError, withLock, type Locker } from 'raceguard';
import * as my from 'raceguard/mysql';
import * as pg from 'raceguard/postgres';
import { conditionalWrites, type ConditionalWrites } from 'raceguard/http';

/** The SQL dialects the lab runs on. */
export type LabDialect = 'postgres' | 'mysql';

/** A row as the driver returns it. */
export type Row = Record<string, unknown>;

/** What one statement answered, the same on both dialects. */
export interface LabStatementResult {
  readonly rows: Row[];
  /**
   * Rows returned by a query, or rows written by INSERT / UPDATE / DELETE
   * (on MySQL, rows an UPDATE really changed: mysql2's `affectedRows`
   * counts the rows merely matched).
   */
  readonly rowCount: number;
  /** MySQL: the AUTO_INCREMENT id an INSERT generated. */
  readonly insertId?: number;
}

interface Statements {
  /** Run one statement written with `$1`, `$2`, ... placeholders. */
  query(text: string, values?: readonly unknown[]): Promise<LabStatementResult>;
}

/** A connection, pool or transaction of either dialect, with the driver object for raceguard's functions. */
type Handle<P, M> = Statements &
  (
    | { readonly dialect: 'postgres'; readonly driver: P }
    | { readonly dialect: 'mysql'; readonly driver: M }
  );

/** Anything statements run on: a pool or a transaction. */
export type LabDb = Handle<pg.Queryable, my.MysqlQueryable>;
/** The lab service's pool. */
export type LabPool = Handle<pg.PoolLike, my.MysqlPool>;
/** A transaction in progress (row locks need one). */
export type LabTransaction = Handle<pg.Transaction, my.MysqlTransaction>;

/** Refuse anything that cannot run a statement, naming what was given. */
function assertDriver(argument: string, driver: unknown): void {
  if (typeof (driver as { query?: unknown } | null)?.query !== 'function') {
    throw new InvalidArgumentError(argument, 'a pool or connection with query()', driver);
  }
}

/**
 * A PostgreSQL pool or transaction as a lab handle.
 *
 * @example
 * ```ts
 * const app = createLabServer({ pool: postgresDb(new pg.Pool()), scenarios: SCENARIOS, gapMs: 2 });
 * ```
 */
export function postgresDb<D extends pg.Queryable>(driver: D): Handle<D, never> {
  assertDriver('driver', driver);
  return {
    dialect: 'postgres',
    driver,
    async query(text, values) {
      const result = await driver.query(text, values === undefined ? undefined : [...values]);
      return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
    },
  };
}

/**
 * A mysql2 pool or connection as a lab handle: `$n` placeholders become
 * `?`, values in their order.
 *
 * @example
 * ```ts
 * const app = createLabServer({ pool: mysqlDb(mysql.createPool(url)), scenarios: SCENARIOS, gapMs: 2 });
 * ```
 */
export function mysqlDb<D extends my.MysqlQueryable>(driver: D): Handle<never, D> {
  assertDriver('driver', driver);
  return {
    dialect: 'mysql',
    driver,
    async query(text, values = []) {
      const order: unknown[] = [];
      const sql = text.replace(/\$(\d+)/g, (_, n: string) => {
        order.push(values[Number(n) - 1]);
        return '?';
      });
      const [result] = await driver.query(sql, order);
      if (Array.isArray(result)) return { rows: result as Row[], rowCount: result.length };
      const header = result as my.ResultHeader;
      const rowCount = /^\s*update\b/i.test(sql)
        ? (header.changedRows ?? header.affectedRows)
        : header.affectedRows;
      return { rows: [], rowCount, insertId: header.insertId };
    },
  };
}

/** The column type of an auto-generated integer primary key. */
export function autoIncrementKey(db: Pick<LabDb, 'dialect'>): string {
  return db.dialect === 'postgres' ? 'serial PRIMARY KEY' : 'int AUTO_INCREMENT PRIMARY KEY';
}

/**
 * Drop `tables` (if they exist) and run `creates`, one statement at a time
 * (mysql2 runs one statement per call). Columns that are keys are
 * `varchar(n)`, which both dialects index.
 */
export async function recreateTables(
  db: LabDb,
  tables: readonly string[],
  creates: readonly string[],
): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${tables.join(', ')}`);
  for (const create of creates) await db.query(create);
}

/** Empty `tables` (MySQL's TRUNCATE takes one table at a time). */
export async function truncate(db: LabDb, ...tables: string[]): Promise<void> {
  if (db.dialect === 'postgres') await db.query(`TRUNCATE ${tables.join(', ')}`);
  else for (const table of tables) await db.query(`TRUNCATE TABLE ${table}`);
}

/** Equality conditions on a row, e.g. `{ id: 1 }`. */
export type LabKey = Readonly<Record<string, string | number>>;

/** `name` quoted as an identifier of the db's dialect, by raceguard's audited helper. */
export function quoteName(db: Pick<LabDb, 'dialect'>, name: string): string {
  return db.dialect === 'postgres' ? pg.quoteIdentifier(name) : my.quoteIdentifier(name);
}

/** `table` (optionally `schema.table` as a pair) quoted for the db's dialect. */
export function quoteTableName(db: Pick<LabDb, 'dialect'>, table: string): string {
  return db.dialect === 'postgres' ? pg.quoteTable(table) : my.quoteTable(table);
}

/** The row of `table` matching `key` (a plain read, no lock). */
export async function readRow(db: LabDb, table: string, key: LabKey): Promise<Row | undefined> {
  const entries = Object.entries(key);
  const where = entries.map(([column], i) => `${quoteName(db, column)} = $${i + 1}`).join(' AND ');
  const table_ = quoteTableName(db, table);
  const { rows } = await db.query(
    `SELECT * FROM ${table_} WHERE ${where}`,
    entries.map(([, value]) => value),
  );
  return rows[0];
}

/** The retry policy the lab's transactions and optimistic updates use. */
export type LabRetryOptions = Pick<pg.TransactionOptions, 'maxAttempts' | 'maxDelayMs' | 'onRetry'>;

/** Options of {@link transaction}. */
export interface LabTransactionOptions extends LabRetryOptions {
  /** @default the server's (READ COMMITTED on PostgreSQL, REPEATABLE READ on InnoDB) */
  readonly isolation?: 'read committed' | 'serializable';
}

/**
 * raceguard's retrying transaction of the pool's dialect: re-run on
 * 40001 / 40P01 (PostgreSQL), 1213 / 1205 / 1020 (InnoDB).
 */
export function transaction<T>(
  pool: LabPool,
  fn: (tx: LabTransaction) => Promise<T>,
  options: LabTransactionOptions = {},
): Promise<T> {
  return pool.dialect === 'postgres'
    ? pg.transaction(pool.driver, (tx) => fn(postgresDb(tx)), options)
    : my.transaction(pool.driver, (tx) => fn(mysqlDb(tx)), options);
}

/** `SELECT * ... FOR UPDATE` of the rows matching `key`, inside `tx`. */
export function lockRows(
  tx: LabTransaction,
  options: { readonly table: string; readonly key: LabKey },
): Promise<Row[]> {
  return tx.dialect === 'postgres'
    ? pg.lockRows(tx.driver, { table: options.table, key: options.key, lockTimeoutMs: 10_000 })
    : my.lockRows(tx.driver, options);
}

/** Options of {@link atomicDecrement}. */
export type AtomicDecrementOptions = my.MysqlAtomicDecrementOptions;
/** Options of {@link atomicIncrement}. */
export type AtomicIncrementOptions = my.MysqlAtomicIncrementOptions;
/** Options of {@link optimisticUpdate}. */
export type OptimisticUpdateOptions = my.MysqlOptimisticUpdateOptions;

/** One raceguard function of each dialect as one function of the lab's database. */
function inDialect<O, R>(
  onPostgres: (db: pg.Queryable, options: O) => R,
  onMysql: (db: my.MysqlQueryable, options: O) => R,
): (db: LabDb, options: O) => R {
  return (db, options) =>
    db.dialect === 'postgres' ? onPostgres(db.driver, options) : onMysql(db.driver, options);
}

/** raceguard's guarded decrement (never below the floor) in the db's dialect. */
export const atomicDecrement = inDialect<AtomicDecrementOptions, Promise<my.MysqlAtomicResult>>(
  pg.atomicDecrement,
  my.atomicDecrement,
);

/** raceguard's guarded increment (never above the ceiling) in the db's dialect. */
export const atomicIncrement = inDialect<AtomicIncrementOptions, Promise<my.MysqlAtomicResult>>(
  pg.atomicIncrement,
  my.atomicIncrement,
);

/**
 * raceguard's optimistic update (read, compute, version-checked write,
 * re-read on a lost race). On InnoDB the re-read must see the winner's
 * commit: run it in autocommit or in a READ COMMITTED transaction, never in
 * REPEATABLE READ, whose snapshot would show the old version on every
 * attempt.
 */
export const optimisticUpdate = inDialect<
  OptimisticUpdateOptions,
  Promise<my.MysqlOptimisticUpdateResult>
>(pg.optimisticUpdate, my.optimisticUpdate);

/** The rows of `table` as versioned resources behind ETag / If-Match, in the db's dialect. */
export function conditionalRows(db: LabDb, table: string): ConditionalWrites<LabKey> {
  return db.dialect === 'postgres'
    ? conditionalWrites(pg.versionedRows(db.driver, { table }))
    : conditionalWrites(my.versionedRows(db.driver, { table }));
}

/**
 * Run `fn` in a transaction under a database advisory lock on `key`:
 * PostgreSQL's transaction-scoped `pg_advisory_xact_lock`, MySQL's
 * session-scoped `GET_LOCK` (through `advisory`, a `MysqlAdvisoryLock` that
 * pins the connection for the lock's lifetime).
 */
export function withAdvisoryLock<T>(
  pool: LabPool,
  advisory: Locker | undefined,
  key: string,
  fn: (tx: LabTransaction) => Promise<T>,
  options: LabRetryOptions,
): Promise<T> {
  if (pool.dialect === 'postgres') {
    return pg.withAdvisoryLock(pool.driver, key, (tx) => fn(postgresDb(tx)), {
      ...options,
      lockTimeoutMs: 10_000,
    });
  }
  if (advisory === undefined) throw new Error('the advisory-lock strategy was not set up');
  // A GET_LOCK has no lease: its session holds it until release.
  return withLock(advisory, key, () => transaction(pool, fn, options), { waitMs: 10_000 });
}

/**
 * Run an `INSERT` of one row into a table whose key is an auto-generated
 * `id` and answer that id (PostgreSQL's `RETURNING id`, MySQL's insert id).
 * With `skipDuplicate`, a row that would break a unique key is not inserted
 * and the answer is `undefined` (`ON CONFLICT DO NOTHING`, `INSERT IGNORE`).
 */
export async function insertReturningId(
  db: LabDb,
  text: string,
  values: readonly unknown[],
  options: { readonly skipDuplicate?: boolean } = {},
): Promise<number | undefined> {
  if (db.dialect === 'postgres') {
    const conflict = options.skipDuplicate === true ? ' ON CONFLICT DO NOTHING' : '';
    const { rows } = await db.query(`${text}${conflict} RETURNING id`, values);
    return rows[0] === undefined ? undefined : Number(rows[0].id);
  }
  const statement =
    options.skipDuplicate === true ? text.replace(/^\s*INSERT\b/i, 'INSERT IGNORE') : text;
  const { rowCount, insertId } = await db.query(statement, values);
  return rowCount === 1 ? insertId : undefined;
}
