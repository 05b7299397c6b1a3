import type { OptimisticResultOf, OptimisticUpdateOf } from '../core/row-updates.js';
import { assertOptimisticOptions, optimisticLoop } from '../core/optimistic-loop.js';
import { assertPlainObject, assertVersion } from '../core/validate.js';
import { RowNotFoundError } from './errors.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { assertQueryable, renderAssignments, renderConditions, runQuery } from './statements.js';
import type { KeyValues, Queryable, Row } from './types.js';

/** Options of {@link compareAndSet}. */
export interface CompareAndSetOptions {
  /** Table holding the row. */
  readonly table: TableName;
  /** Equality conditions that identify the row, e.g. `{ id: 42 }`. */
  readonly key: KeyValues;
  /**
   * Integer column incremented by every successful write.
   * @default 'version'
   */
  readonly versionColumn?: string;
  /** The version the caller read. */
  readonly expectedVersion: number | string | bigint;
  /** Columns to write. The version column is incremented by the statement itself. */
  readonly set: Readonly<Record<string, unknown>>;
}

/** Result of {@link compareAndSet}. */
export interface CompareAndSetResult {
  /** `true` when the row still had `expectedVersion` and was written. */
  readonly applied: boolean;
  /** The written row (all columns), when applied. */
  readonly row: Row | undefined;
}

/**
 * One version-checked write: `UPDATE t SET ..., version = version + 1 WHERE
 * key AND version = $expected RETURNING *`. `applied` is `false` when someone
 * else wrote the row since it was read (or it no longer exists).
 *
 * @example
 * ```ts
 * const { applied } = await compareAndSet(pool, {
 *   table: 'loans', key: { id: 7 }, expectedVersion: 3, set: { status: 'approved' },
 * });
 * if (!applied) return reply.code(409).send({ error: 'changed by someone else' });
 * ```
 */
export async function compareAndSet(
  db: Queryable,
  options: CompareAndSetOptions,
): Promise<CompareAndSetResult> {
  assertQueryable('db', db);
  assertPlainObject('options', options);
  const table = quoteTable(options.table);
  const version = quoteIdentifier(options.versionColumn ?? 'version', 'options.versionColumn');
  const expected = options.expectedVersion;
  assertVersion('options.expectedVersion', expected);
  const values: unknown[] = [];
  const assignments = renderAssignments('options.set', options.set, values);
  const where = renderConditions('options.key', options.key, values);
  values.push(typeof expected === 'bigint' ? expected.toString() : expected);
  const { rows } = await runQuery(
    db,
    `UPDATE ${table} SET ${assignments}, ${version} = ${version} + 1 WHERE ${where} AND ${version} = $${values.length} RETURNING *`,
    values,
  );
  return { applied: rows.length === 1, row: rows[0] };
}

/** Options of {@link optimisticUpdate}; `maxAttempts` counts read-compute-write rounds. */
export type OptimisticUpdateOptions<R extends Row = Row> = OptimisticUpdateOf<
  R,
  TableName,
  KeyValues
>;

/** Result of {@link optimisticUpdate}. */
export type OptimisticUpdateResult<R extends Row = Row> = OptimisticResultOf<R>;

/**
 * Optimistic locking: read the row, compute changes with `update`, write them
 * only if the version column is unchanged ({@link compareAndSet}), and on a
 * lost race re-read and try again with capped exponential backoff and full
 * jitter. No lock is held while `update` runs.
 *
 * Throws {@link OptimisticConflictError} (carrying the current row) when
 * attempts run out, {@link RowNotFoundError} when no row matches.
 *
 * @example
 * ```ts
 * const result = await optimisticUpdate(pool, {
 *   table: 'products',
 *   key: { id: 1 },
 *   update: (row) => (Number(row.stock) > 0 ? { stock: Number(row.stock) - 1 } : null),
 * });
 * if (!result.applied) return reply.code(410).send({ error: 'sold out' });
 * ```
 */
export async function optimisticUpdate<R extends Row = Row>(
  db: Queryable,
  options: OptimisticUpdateOptions<R>,
): Promise<OptimisticUpdateResult<R>> {
  assertQueryable('db', db);
  assertOptimisticOptions(options);
  const table = quoteTable(options.table);
  const versionColumn = options.versionColumn ?? 'version';
  const version = quoteIdentifier(versionColumn, 'options.versionColumn');
  const keyValues: unknown[] = [];
  const where = renderConditions('options.key', options.key, keyValues);
  const select = `SELECT * FROM ${table} WHERE ${where}`;
  return optimisticLoop(options, versionColumn, {
    table,
    read: async () => {
      const { rows } = await runQuery(db, select, keyValues);
      const row = rows[0] as R | undefined;
      if (row !== undefined && row[versionColumn] === undefined) {
        // The row exists; the column does not. Let the server say so (42703), as
        // compareAndSet does: UnknownIdentifierError, not a 404-looking RowNotFoundError.
        await runQuery(db, `SELECT ${version} FROM ${table} WHERE false`);
        throw new RowNotFoundError(
          `${table} (no column "${versionColumn}" in the row)`,
          options.key,
        );
      }
      return row;
    },
    write: async (_current, expectedVersion, set) => {
      const written = await compareAndSet(db, {
        table: options.table,
        key: options.key,
        versionColumn,
        expectedVersion,
        set,
      });
      return written.applied ? (written.row as R | undefined) : undefined;
    },
  });
}
