import { InvalidArgumentError } from '../core/errors.js';
import { StaleTokenError } from '../core/lock.js';
import { assertPlainObject } from '../core/validate.js';
import { RowNotFoundError } from './errors.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { assertQueryable, renderAssignments, renderConditions, runQuery } from './statements.js';
import type { KeyValues, Queryable, Row } from './types.js';

/** Options of {@link fencedUpdate}. */
export interface FencedUpdateOptions {
  /** Table holding the row. */
  readonly table: TableName;
  /** Equality conditions that identify the row. */
  readonly key: KeyValues;
  /** Columns to write. */
  readonly set: Readonly<Record<string, unknown>>;
  /** The fencing token of the lock held while writing (`handle.token`). */
  readonly token: bigint;
  /**
   * Nullable bigint column holding the newest token the row has accepted.
   * @default 'fence_token'
   */
  readonly tokenColumn?: string;
}

/**
 * Fencing at the resource (Kleppmann, "How to do distributed locking",
 * 2016): write the row only if `token` is at least the newest token it has
 * accepted, and record `token`, in one statement. A holder whose lease ran
 * out while it was paused carries an older token than the holder after it,
 * so its late write fails with {@link StaleTokenError} instead of silently
 * overwriting newer data. Equal tokens pass: they come from the same grant,
 * so one holder may write several times.
 *
 * @example
 * ```ts
 * // ALTER TABLE invoices ADD COLUMN fence_token bigint;
 * await withLock(locks, `invoice:${id}`, (lock) =>
 *   fencedUpdate(pool, { table: 'invoices', key: { id }, set: { status: 'sent' }, token: lock.token }),
 * );
 * ```
 */
export async function fencedUpdate(db: Queryable, options: FencedUpdateOptions): Promise<Row> {
  assertQueryable('db', db);
  assertPlainObject('options', options);
  const { token } = options;
  if (typeof token !== 'bigint' || token < 0n)
    throw new InvalidArgumentError('options.token', 'a non-negative bigint', token);
  const table = quoteTable(options.table);
  const fence = quoteIdentifier(options.tokenColumn ?? 'fence_token', 'options.tokenColumn');
  const values: unknown[] = [];
  const assignments = renderAssignments('options.set', options.set, values);
  const where = renderConditions('options.key', options.key, values);
  values.push(token.toString());
  const tokenRef = `$${values.length}::bigint`;
  const { rows } = await runQuery(
    db,
    `UPDATE ${table} SET ${assignments}, ${fence} = ${tokenRef} WHERE ${where} AND (${fence} IS NULL OR ${fence} <= ${tokenRef}) RETURNING *`,
    values,
  );
  const row = rows[0];
  if (row !== undefined) return row;
  const keyValues: unknown[] = [];
  const current = (
    await runQuery(
      db,
      `SELECT ${fence} AS token FROM ${table} WHERE ${renderConditions('options.key', options.key, keyValues)}`,
      keyValues,
    )
  ).rows[0];
  if (current === undefined) throw new RowNotFoundError(table, options.key);
  throw new StaleTokenError(
    `${table} ${JSON.stringify(options.key)}`,
    token,
    BigInt(String(current.token)),
  );
}
