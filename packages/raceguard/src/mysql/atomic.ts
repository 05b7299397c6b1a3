import type {
  AtomicResultOf,
  AtomicUpdateOf,
  DecrementBound,
  IncrementBounds,
} from '../core/row-updates.js';
import {
  assertKnownOptions,
  assertPlainObject,
  assertPositiveInteger,
  assertSafeInteger,
  assertVersion,
} from '../core/validate.js';
import { quoteIdentifier, quoteTable, type MysqlTableName } from './identifiers.js';
import {
  assertMysqlQueryable,
  changedRowsOf,
  execute,
  renderAssignments,
  renderConditions,
  selectRows,
} from './statements.js';
import type { MysqlKey, MysqlQueryable, MysqlRow } from './types.js';

/** Result of {@link atomicDecrement} and {@link atomicIncrement}. */
export type MysqlAtomicResult = AtomicResultOf<MysqlRow>;

/** Options of {@link atomicDecrement}. */
export interface MysqlAtomicDecrementOptions
  extends AtomicUpdateOf<MysqlTableName, MysqlKey>, DecrementBound {}

/** Options of {@link atomicIncrement}. */
export interface MysqlAtomicIncrementOptions
  extends AtomicUpdateOf<MysqlTableName, MysqlKey>, IncrementBounds {}

const COMMON = ['table', 'key', 'column', 'amount'];

async function applied(
  db: MysqlQueryable,
  table: string,
  column: string,
  quotedColumn: string,
  key: MysqlKey,
  sql: string,
  values: unknown[],
  newValueKnown: boolean,
): Promise<MysqlAtomicResult> {
  const header = await execute(db, sql, values);
  // The one-statement path needs nothing more; the key is rendered again only to read back.
  if (changedRowsOf(header) > 0 && newValueKnown) {
    return { applied: true, row: { ...key, [column]: header.insertId } };
  }
  const keyValues: unknown[] = [];
  const where = renderConditions('options.key', key, keyValues);
  if (changedRowsOf(header) > 0) {
    const [row] = await selectRows(
      db,
      `SELECT ${quotedColumn} FROM ${table} WHERE ${where}`,
      keyValues,
    );
    return { applied: true, row: { ...key, ...row } };
  }
  const [current] = await selectRows(db, `SELECT * FROM ${table} WHERE ${where}`, keyValues);
  return current === undefined
    ? { applied: false, reason: 'not-found' }
    : { applied: false, reason: 'limit', current };
}

/**
 * Take `amount` from a counter in one statement, only if it stays at or
 * above `floor`: `` UPDATE t SET c = LAST_INSERT_ID(c - ?) WHERE key AND c >= ? ``
 * (the comparison never subtracts, so an UNSIGNED column cannot overflow).
 * The new value comes back in the statement's `insertId`: one round trip.
 * Success is judged by the rows changed, not `affectedRows`, which with
 * mysql2's default `FOUND_ROWS` flag counts rows merely matched.
 *
 * @example
 * ```ts
 * const r = await atomicDecrement(pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: 1 });
 * if (!r.applied) return reply.code(r.reason === 'not-found' ? 404 : 409).send();
 * ```
 */
export async function atomicDecrement(
  db: MysqlQueryable,
  options: MysqlAtomicDecrementOptions,
): Promise<MysqlAtomicResult> {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set([...COMMON, 'floor']));
  assertPositiveInteger('options.amount', options.amount);
  const floor = options.floor ?? 0;
  assertSafeInteger('options.floor', floor);
  const table = quoteTable(options.table);
  const column = quoteIdentifier(options.column, 'options.column');
  const values: unknown[] = [];
  const set = floor >= 0 ? `LAST_INSERT_ID(${column} - ?)` : `${column} - ?`;
  values.push(options.amount);
  const where = renderConditions('options.key', options.key, values);
  values.push(options.amount + floor);
  return applied(
    db,
    table,
    options.column,
    column,
    options.key,
    `UPDATE ${table} SET ${column} = ${set} WHERE ${where} AND ${column} >= ?`,
    values,
    floor >= 0, // LAST_INSERT_ID keeps unsigned values: a negative one is read back instead
  );
}

/**
 * Add `amount` to a counter in one statement, only if it stays at or below
 * `ceiling` and/or the row's `ceilingColumn`.
 *
 * @example
 * ```ts
 * const r = await atomicIncrement(pool, { table: 'coupons', key: { code }, column: 'used', amount: 1, ceilingColumn: 'max_uses' });
 * ```
 */
export async function atomicIncrement(
  db: MysqlQueryable,
  options: MysqlAtomicIncrementOptions,
): Promise<MysqlAtomicResult> {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set([...COMMON, 'ceiling', 'ceilingColumn']));
  assertPositiveInteger('options.amount', options.amount);
  if (options.ceiling !== undefined) assertSafeInteger('options.ceiling', options.ceiling);
  const table = quoteTable(options.table);
  const column = quoteIdentifier(options.column, 'options.column');
  const values: unknown[] = [options.amount];
  const where = renderConditions('options.key', options.key, values);
  const bounds: string[] = [];
  if (options.ceiling !== undefined) {
    bounds.push(`${column} <= ?`);
    values.push(options.ceiling - options.amount);
  }
  if (options.ceilingColumn !== undefined) {
    bounds.push(
      `${column} + ? <= ${quoteIdentifier(options.ceilingColumn, 'options.ceilingColumn')}`,
    );
    values.push(options.amount);
  }
  return applied(
    db,
    table,
    options.column,
    column,
    options.key,
    `UPDATE ${table} SET ${column} = LAST_INSERT_ID(${column} + ?) WHERE ${[where, ...bounds].join(' AND ')}`,
    values,
    true,
  );
}

/** Options of {@link compareAndSet}. */
export interface MysqlCompareAndSetOptions {
  readonly table: MysqlTableName;
  readonly key: MysqlKey;
  /** Integer column incremented by every successful write. @default 'version' */
  readonly versionColumn?: string;
  /** The version the caller read. */
  readonly expectedVersion: number | string | bigint;
  /** Columns to write; the version column is incremented by the statement itself. */
  readonly set: Readonly<Record<string, unknown>>;
}

/**
 * One version-checked write: `` UPDATE t SET ..., v = v + 1 WHERE key AND v = ? ``.
 * `applied` is false when someone else wrote the row since it was read (or
 * it is gone); `version` is the new version when applied.
 *
 * @example
 * ```ts
 * const { applied } = await compareAndSet(pool, { table: 'loans', key: { id: 7 }, expectedVersion: 3, set: { status: 'approved' } });
 * ```
 */
export async function compareAndSet(
  db: MysqlQueryable,
  options: MysqlCompareAndSetOptions,
): Promise<{ readonly applied: boolean; readonly version: string | undefined }> {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions(
    'options',
    options,
    new Set(['table', 'key', 'versionColumn', 'expectedVersion', 'set']),
  );
  const expected = options.expectedVersion;
  assertVersion('options.expectedVersion', expected);
  const table = quoteTable(options.table);
  const version = quoteIdentifier(options.versionColumn ?? 'version', 'options.versionColumn');
  const values: unknown[] = [];
  const assignments = renderAssignments('options.set', options.set, values);
  const where = renderConditions('options.key', options.key, values);
  values.push(String(expected));
  const header = await execute(
    db,
    `UPDATE ${table} SET ${assignments}, ${version} = ${version} + 1 WHERE ${where} AND ${version} = ?`,
    values,
  );
  const done = changedRowsOf(header) > 0;
  return { applied: done, version: done ? (BigInt(expected) + 1n).toString() : undefined };
}
