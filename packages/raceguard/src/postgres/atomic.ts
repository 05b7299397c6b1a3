import { InvalidArgumentError } from '../core/errors.js';
import type {
  AtomicResultOf,
  AtomicUpdateOf,
  DecrementBound,
  IncrementBounds,
} from '../core/row-updates.js';
import { assertPlainObject, assertPositiveInteger, assertSafeInteger } from '../core/validate.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { assertQueryable, renderConditions, runQuery, statementName } from './statements.js';
import type { KeyValues, Queryable, Row } from './types.js';

/** Result of {@link atomicDecrement} and {@link atomicIncrement}. */
export type AtomicUpdateResult = AtomicResultOf<Row>;

interface AtomicCommon extends AtomicUpdateOf<TableName, KeyValues> {
  /**
   * Send the UPDATE as a named prepared statement, parsed once per
   * connection (the single largest cost of a one-row update). Turn it off
   * behind a pooler that cannot carry prepared statements (PgBouncer before
   * 1.21 in transaction mode).
   * @default true
   */
  readonly prepare?: boolean;
}

/** Options of {@link atomicDecrement}. */
export interface AtomicDecrementOptions extends AtomicCommon, DecrementBound {}

/** Options of {@link atomicIncrement}. */
export interface AtomicIncrementOptions extends AtomicCommon, IncrementBounds {}

/**
 * Take `amount` from a counter in one statement, only if it stays at or
 * above `floor`: `UPDATE t SET c = c - $n WHERE key AND c - $n >= $floor`.
 * The check and the write happen under the row lock the UPDATE takes, so no
 * interleaving can overdraw it. Use it for stock, balances and quotas.
 *
 * Runs one statement when it applies. When it does not, one more read tells
 * "limit" (returning the current row) from "not-found".
 *
 * @example
 * ```ts
 * const r = await atomicDecrement(pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: 1 });
 * if (!r.applied) return reply.code(r.reason === 'not-found' ? 404 : 409).send();
 * ```
 */
export async function atomicDecrement(
  db: Queryable,
  options: AtomicDecrementOptions,
): Promise<AtomicUpdateResult> {
  assertPlainObject('options', options);
  const floor = options.floor ?? 0;
  assertSafeInteger('options.floor', floor);
  return adjust(db, options, '-', (column, amountRef, values) => {
    values.push(floor);
    return `${column} - ${amountRef} >= $${values.length}`;
  });
}

/**
 * Add `amount` to a counter in one statement, optionally only if it stays at
 * or below a ceiling (a constant, or another column such as a coupon's cap):
 * `UPDATE t SET c = c + $n WHERE key AND c + $n <= cap`.
 *
 * @example
 * ```ts
 * // a coupon that may be redeemed at most `max_redemptions` times
 * const r = await atomicIncrement(pool, {
 *   table: 'coupons', key: { code: 'SPRING' }, column: 'redeemed', amount: 1,
 *   ceilingColumn: 'max_redemptions',
 * });
 * ```
 */
export async function atomicIncrement(
  db: Queryable,
  options: AtomicIncrementOptions,
): Promise<AtomicUpdateResult> {
  assertPlainObject('options', options);
  const { ceiling, ceilingColumn } = options;
  if (ceiling !== undefined && ceilingColumn !== undefined) {
    throw new InvalidArgumentError(
      'options.ceiling',
      'unset when options.ceilingColumn is set',
      ceiling,
    );
  }
  if (ceiling !== undefined) assertSafeInteger('options.ceiling', ceiling);
  const ceilingRef =
    ceilingColumn === undefined
      ? undefined
      : quoteIdentifier(ceilingColumn, 'options.ceilingColumn');
  return adjust(db, options, '+', (column, amountRef, values) => {
    if (ceilingRef !== undefined) return `${column} + ${amountRef} <= ${ceilingRef}`;
    if (ceiling === undefined) return undefined;
    values.push(ceiling);
    return `${column} + ${amountRef} <= $${values.length}`;
  });
}

async function adjust(
  db: Queryable,
  options: AtomicCommon,
  operator: '+' | '-',
  bound: (column: string, amountRef: string, values: unknown[]) => string | undefined,
): Promise<AtomicUpdateResult> {
  assertQueryable('db', db);
  assertPositiveInteger('options.amount', options.amount);
  const table = quoteTable(options.table);
  const column = quoteIdentifier(options.column, 'options.column');
  const values: unknown[] = [options.amount];
  const where = renderConditions('options.key', options.key, values);
  const condition = bound(column, '$1', values);
  // Returning only the key and the counter (not *) keeps the prepared plan
  // valid when unrelated columns are added to the table later.
  const returning = [...new Set([...Object.keys(options.key), options.column])]
    .map((c) => quoteIdentifier(c))
    .join(', ');
  const text = `UPDATE ${table} SET ${column} = ${column} ${operator} $1 WHERE ${where}${condition ? ` AND ${condition}` : ''} RETURNING ${returning}`;
  const prepare = options.prepare ?? true;
  const { rows } = await runQuery(db, text, values, prepare ? statementName(text) : undefined);
  const row = rows[0];
  if (row !== undefined) return { applied: true, row };
  const keyOnly: unknown[] = [];
  const keyWhere = renderConditions('options.key', options.key, keyOnly);
  const current = (await runQuery(db, `SELECT * FROM ${table} WHERE ${keyWhere}`, keyOnly)).rows[0];
  return current === undefined
    ? { applied: false, reason: 'not-found' }
    : { applied: false, reason: 'limit', current };
}
