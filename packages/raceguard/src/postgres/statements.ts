/**
 * Internal building blocks for the statements raceguard sends: running a
 * query with error translation, and rendering equality conditions and SET
 * lists whose names go through {@link quoteIdentifier} and whose values are
 * always bound parameters.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { assertPlainObject } from '../core/validate.js';
import { fromDriverError, PoolClosedError } from './errors.js';
import { quoteIdentifier } from './identifiers.js';
import type { PoolLike, Queryable, QueryResultLike } from './types.js';

/**
 * Run one statement, translating driver failures into raceguard errors. With
 * `name`, the statement is sent as a named prepared statement, which the
 * driver parses once per connection.
 */
export async function runQuery(
  db: Queryable,
  text: string,
  values?: unknown[],
  name?: string,
): Promise<QueryResultLike> {
  try {
    return await (name === undefined
      ? db.query(text, values)
      : db.query({ name, text, ...(values !== undefined && { values }) }));
  } catch (error) {
    throw fromDriverError(error);
  }
}

const statementNames = new Map<string, string>();
/** Distinct statement texts that get a name; later texts run unnamed, so the map cannot grow without bound. */
const MAX_NAMED_STATEMENTS = 1000;

/**
 * A stable name for a statement text (`raceguard_<hash>`), or `undefined`
 * once {@link MAX_NAMED_STATEMENTS} texts have been named.
 */
export function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `raceguard_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}

/** Reject anything that is not queryable, and pools that were closed. */
export function assertQueryable(argument: string, db: unknown): asserts db is Queryable {
  if (typeof db !== 'object' || db === null || typeof (db as Queryable).query !== 'function') {
    throw new InvalidArgumentError(argument, 'a pg Pool, Client or raceguard Transaction', db);
  }
  const pool = db as PoolLike;
  if (pool.ending === true || pool.ended === true) throw new PoolClosedError();
}

function assertBindable(argument: string, value: unknown): void {
  if (value === undefined) throw new InvalidArgumentError(argument, 'a defined value', value);
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new InvalidArgumentError(argument, 'a finite number', value);
  }
}

/**
 * Render `"a" = $n AND "b" = $n+1 ...` for a key object, appending its values
 * to `values`. A key value that is an array renders as `= ANY($n)`.
 */
export function renderConditions(argument: string, key: unknown, values: unknown[]): string {
  assertPlainObject(argument, key);
  const entries = Object.entries(key);
  if (entries.length === 0) {
    throw new InvalidArgumentError(argument, 'an object with at least one column', key);
  }
  return entries
    .map(([column, value]) => {
      const name = quoteIdentifier(column, `${argument} column`);
      if (value === null) {
        throw new InvalidArgumentError(
          `${argument}.${column}`,
          'a non-null value (NULL never equals anything)',
          value,
        );
      }
      if (Array.isArray(value)) {
        if (value.length === 0)
          throw new InvalidArgumentError(`${argument}.${column}`, 'a non-empty array', value);
        value.forEach((item, i) => assertBindable(`${argument}.${column}[${i}]`, item));
        values.push(value);
        return `${name} = ANY($${values.length})`;
      }
      assertBindable(`${argument}.${column}`, value);
      values.push(value);
      return `${name} = $${values.length}`;
    })
    .join(' AND ');
}

/** Render `"a" = $n, "b" = $n+1` for a set of changes, appending values. */
export function renderAssignments(argument: string, changes: unknown, values: unknown[]): string {
  assertPlainObject(argument, changes);
  const entries = Object.entries(changes);
  if (entries.length === 0) {
    throw new InvalidArgumentError(argument, 'an object with at least one column', changes);
  }
  return entries
    .map(([column, value]) => {
      assertBindable(`${argument}.${column}`, value);
      values.push(value);
      return `${quoteIdentifier(column, `${argument} column`)} = $${values.length}`;
    })
    .join(', ');
}

/**
 * Run `run` with `lock_timeout` set to `lockTimeoutMs` for the current
 * transaction, then restore the value that was in force before. The setting
 * is transaction-local, so an error (which aborts the transaction) needs no
 * restore.
 */
export async function withLockTimeout<T>(
  tx: Queryable,
  lockTimeoutMs: number | undefined,
  run: () => Promise<T>,
): Promise<T> {
  if (lockTimeoutMs === undefined) return run();
  const { rows } = await runQuery(
    tx,
    "SELECT current_setting('lock_timeout') AS previous, set_config('lock_timeout', $1, true)",
    [`${lockTimeoutMs}ms`],
  );
  const previous = rows[0]?.previous;
  const result = await run();
  await runQuery(tx, "SELECT set_config('lock_timeout', $1, true)", [
    typeof previous === 'string' ? previous : '0',
  ]);
  return result;
}
