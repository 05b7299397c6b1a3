import { InvalidArgumentError } from '../core/errors.js';
import { assertPlainObject } from '../core/validate.js';
import { fromMysqlError } from './errors.js';
import { quoteIdentifier } from './identifiers.js';
import type { MysqlQueryable, MysqlRow, ResultHeader } from './types.js';

export function assertMysqlQueryable(argument: string, db: unknown): asserts db is MysqlQueryable {
  if (typeof (db as { query?: unknown } | null)?.query !== 'function') {
    throw new InvalidArgumentError(argument, 'a mysql2/promise pool or connection', db);
  }
}

function assertBindable(argument: string, value: unknown): void {
  if (value === undefined) throw new InvalidArgumentError(argument, 'a defined value', value);
  if (typeof value === 'number' && !Number.isFinite(value))
    throw new InvalidArgumentError(argument, 'a finite number', value);
}

/** `` `a` = ? AND `b` = ? `` for a key object, appending its values. */
export function renderConditions(argument: string, key: unknown, values: unknown[]): string {
  assertPlainObject(argument, key);
  const entries = Object.entries(key);
  if (entries.length === 0)
    throw new InvalidArgumentError(argument, 'an object with at least one column', key);
  return entries
    .map(([column, value]) => {
      if (value === null)
        throw new InvalidArgumentError(
          `${argument}.${column}`,
          'a non-null value (NULL never equals anything)',
          value,
        );
      assertBindable(`${argument}.${column}`, value);
      values.push(value);
      return `${quoteIdentifier(column, `${argument} column`)} = ?`;
    })
    .join(' AND ');
}

/** `` `a` = ?, `b` = ? `` for a set of changes, appending values. */
export function renderAssignments(argument: string, changes: unknown, values: unknown[]): string {
  assertPlainObject(argument, changes);
  const entries = Object.entries(changes);
  if (entries.length === 0)
    throw new InvalidArgumentError(argument, 'an object with at least one column', changes);
  return entries
    .map(([column, value]) => {
      assertBindable(`${argument}.${column}`, value);
      values.push(value);
      return `${quoteIdentifier(column, `${argument} column`)} = ?`;
    })
    .join(', ');
}

/** Runs a statement that returns rows. */
export async function selectRows(
  db: MysqlQueryable,
  sql: string,
  values: unknown[],
): Promise<MysqlRow[]> {
  try {
    const [rows] = await db.query(sql, values);
    return rows as MysqlRow[];
  } catch (error) {
    throw fromMysqlError(error);
  }
}

/** Runs a statement that changes rows. */
export async function execute(
  db: MysqlQueryable,
  sql: string,
  values: unknown[],
): Promise<ResultHeader> {
  try {
    const [header] = await db.query(sql, values);
    return header as ResultHeader;
  } catch (error) {
    throw fromMysqlError(error);
  }
}

/** Rows really changed: `changedRows` where mysql2 reports it, since `affectedRows` counts matched rows (mysql2#875). */
export function changedRowsOf(header: ResultHeader): number {
  return header.changedRows ?? header.affectedRows;
}
