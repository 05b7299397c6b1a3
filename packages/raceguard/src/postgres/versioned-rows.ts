import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import {
  versionedStore,
  type VersionedRow as CoreVersionedRow,
  type VersionedRows as CoreVersionedRows,
} from '../core/versioned-store.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { compareAndSet } from './optimistic.js';
import { assertQueryable, renderConditions, runQuery } from './statements.js';
import type { KeyValues, Queryable, Row } from './types.js';

/** Options of {@link versionedRows}. */
export interface VersionedRowsOptions {
  readonly table: TableName;
  /**
   * Integer column incremented by every write (a new row starts at 1).
   * @default 'version'
   */
  readonly versionColumn?: string;
}

/** A row and its version, as a decimal string. */
export type VersionedRow = CoreVersionedRow<Row>;

/**
 * Rows of one table as versioned resources, for the conditional writes of
 * `raceguard/http` (`conditionalWrites`): every update and delete checks the
 * version in the statement that writes it, and bumps it.
 */
export type VersionedRows = CoreVersionedRows<KeyValues, Row>;

/**
 * The rows of `table` as versioned resources.
 *
 * @example
 * ```ts
 * const documents = conditionalWrites(versionedRows(pool, { table: 'documents' }));
 * ```
 */
export function versionedRows(db: Queryable, options: VersionedRowsOptions): VersionedRows {
  assertQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['table', 'versionColumn']));
  const table = quoteTable(options.table);
  const versionColumn = options.versionColumn ?? 'version';
  const version = quoteIdentifier(versionColumn, 'options.versionColumn');
  return versionedStore<KeyValues, Row>(
    {
      versionColumn,
      async select(key) {
        const values: unknown[] = [];
        const where = renderConditions('key', key, values);
        return (await runQuery(db, `SELECT * FROM ${table} WHERE ${where}`, values)).rows;
      },
      async update(key, expected, changes) {
        const result = await compareAndSet(db, {
          table: options.table,
          key,
          versionColumn,
          expectedVersion: expected,
          set: changes,
        });
        return result.applied ? { applied: true, row: result.row! } : { applied: false };
      },
      async delete(key, expected) {
        const values: unknown[] = [];
        const where = renderConditions('key', key, values);
        values.push(expected);
        const { rows } = await runQuery(
          db,
          `DELETE FROM ${table} WHERE ${where} AND ${version} = $${values.length} RETURNING ${version}`,
          values,
        );
        return rows.length > 0;
      },
      async insert(columns) {
        const names = Object.keys(columns).map((column) =>
          quoteIdentifier(column, 'values column'),
        );
        const parameters = Object.values(columns);
        const { rows } = await runQuery(
          db,
          `INSERT INTO ${table} (${[...names, version].join(', ')}) VALUES (${parameters.map((_, i) => `$${i + 1}`).join(', ')}, 1) ON CONFLICT DO NOTHING RETURNING *`,
          parameters,
        );
        return rows[0] === undefined ? { created: false } : { created: true, row: rows[0] };
      },
    },
    options.table.toString(),
  );
}
