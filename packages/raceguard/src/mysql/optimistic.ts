import type { OptimisticResultOf, OptimisticUpdateOf } from '../core/row-updates.js';
import { assertOptimisticOptions, optimisticLoop } from '../core/optimistic-loop.js';
import { compareAndSet } from './atomic.js';
import { StaleSnapshotError } from './errors.js';
import { quoteIdentifier, quoteTable, type MysqlTableName } from './identifiers.js';
import { assertMysqlQueryable, renderConditions, selectRows } from './statements.js';
import type { MysqlKey, MysqlQueryable, MysqlRow } from './types.js';

/** Options of {@link optimisticUpdate}; `maxAttempts` counts read-compute-write rounds. */
export type MysqlOptimisticUpdateOptions<R extends MysqlRow = MysqlRow> = OptimisticUpdateOf<
  R,
  MysqlTableName,
  MysqlKey
>;

/** Result of {@link optimisticUpdate}: the row as read with the changes and the new version applied (no `RETURNING` on MySQL). */
export type MysqlOptimisticUpdateResult<R extends MysqlRow = MysqlRow> = OptimisticResultOf<R>;

/**
 * Optimistic locking on MySQL and MariaDB: read the row, compute changes,
 * write them only if the version column is unchanged, and on a lost race
 * re-read and try again (capped exponential backoff, full jitter). No lock
 * is held while `update` runs. Throws `OptimisticConflictError` (with the
 * current row) when attempts run out, `RowNotFoundError` when no row matches.
 *
 * @example
 * ```ts
 * await optimisticUpdate(pool, {
 *   table: 'products',
 *   key: { id: 1 },
 *   update: (row) => (Number(row.stock) > 0 ? { stock: Number(row.stock) - 1 } : null),
 * });
 * ```
 */
export async function optimisticUpdate<R extends MysqlRow = MysqlRow>(
  db: MysqlQueryable,
  options: MysqlOptimisticUpdateOptions<R>,
): Promise<MysqlOptimisticUpdateResult<R>> {
  assertMysqlQueryable('db', db);
  assertOptimisticOptions(options);
  const table = quoteTable(options.table);
  const versionColumn = options.versionColumn ?? 'version';
  const version = quoteIdentifier(versionColumn, 'options.versionColumn');
  const keyValues: unknown[] = [];
  const where = renderConditions('options.key', options.key, keyValues);
  // Selecting the version column by name: a missing column is the server's clear error, not a
  // "not found" (unless the version column is itself named like the alias).
  const alias = 'raceguard_version';
  const select =
    versionColumn === alias
      ? `SELECT * FROM ${table} WHERE ${where}`
      : `SELECT *, ${version} AS \`${alias}\` FROM ${table} WHERE ${where}`;
  const read = async (): Promise<R | undefined> => {
    const [row] = await selectRows(db, select, keyValues);
    if (row === undefined || versionColumn === alias) return row as R | undefined;
    const rest = { ...row };
    delete rest[alias];
    return rest as R;
  };
  return optimisticLoop(options, versionColumn, {
    table,
    read,
    write: async (current, expectedVersion, set) => {
      const written = await compareAndSet(db, {
        table: options.table,
        key: options.key,
        versionColumn,
        expectedVersion,
        set,
      });
      if (!written.applied) return undefined;
      return { ...current, ...set, [versionColumn]: written.version };
    },
    // Seeing the version the last write lost against again: the reads come from a snapshot.
    sameVersionAgain: (version) => {
      throw new StaleSnapshotError(table, version);
    },
  });
}
