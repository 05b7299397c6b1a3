import type { OptimisticResultOf, OptimisticUpdateOf } from '../core/row-updates.js';
import { OptimisticConflictError, RetryExhaustedError, RowNotFoundError } from '../core/errors.js';
import { retry } from '../core/retry.js';
import { retryOptionsOf } from '../core/retry-policy.js';
import {
  assertAbortSignal,
  assertFunction,
  assertPlainObject,
  assertVersion,
} from '../core/validate.js';
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

class VersionMoved extends Error {
  /** Named so in retry events. */
  readonly code = 'version-moved';
}

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
  assertPlainObject('options', options);
  assertFunction('options.update', options.update);
  assertAbortSignal('options.signal', options.signal);
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
  const started = performance.now();
  const read = async (): Promise<MysqlRow | undefined> => {
    const [row] = await selectRows(db, select, keyValues);
    if (row === undefined) return undefined;
    if (versionColumn === alias) return row;
    const rest = { ...row };
    delete rest[alias];
    return rest;
  };
  // The version the last write lost against: seeing it again means the reads come from a snapshot.
  let lost: string | undefined;
  try {
    return await retry(
      async ({ attempt }) => {
        const current = await read();
        if (current === undefined) throw new RowNotFoundError(table, options.key);
        const expectedVersion = current[versionColumn];
        // A version column of the wrong type is a schema mistake, named before anything is written.
        assertVersion(`the version column "${versionColumn}" of ${table}`, expectedVersion);
        if (lost !== undefined && String(expectedVersion) === lost) {
          throw new StaleSnapshotError(table, expectedVersion);
        }
        const changes = await options.update(current as R, { attempt });
        if (changes === null) return { applied: false, row: current as R, attempts: attempt };
        const written = await compareAndSet(db, {
          table: options.table,
          key: options.key,
          versionColumn,
          expectedVersion,
          set: changes,
        });
        if (!written.applied) {
          lost = String(expectedVersion);
          throw new VersionMoved();
        }
        const row = { ...current, ...changes, [versionColumn]: written.version } as unknown as R;
        return { applied: true, row, attempts: attempt };
      },
      retryOptionsOf(options, (error) => error instanceof VersionMoved, 'optimistic-update'),
    );
  } catch (error) {
    if (error instanceof RetryExhaustedError) {
      throw new OptimisticConflictError(
        await read().catch(() => undefined),
        error.attempts,
        performance.now() - started,
        error.cause,
      );
    }
    throw error;
  }
}
