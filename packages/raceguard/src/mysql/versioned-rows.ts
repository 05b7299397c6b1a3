import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { versionedStore, type VersionedRow, type VersionedRows } from '../core/versioned-store.js';
import { compareAndSet } from './atomic.js';
import { MYSQL_ERRORS } from './errors.js';
import { quoteIdentifier, quoteTable, type MysqlTableName } from './identifiers.js';
import { assertMysqlQueryable, execute, renderConditions, selectRows } from './statements.js';
import type { MysqlKey, MysqlQueryable, MysqlRow } from './types.js';

/** A row and its version, as a decimal string. */
export type MysqlVersionedRow = VersionedRow<MysqlRow>;

/**
 * The rows of one table as versioned resources for `conditionalWrites` of
 * `raceguard/http` (ETag / If-Match), on MySQL and MariaDB: every update and
 * delete checks the version in the statement that writes it. MySQL has no
 * `RETURNING`: a written or created row is read back.
 *
 * @example
 * ```ts
 * const documents = conditionalWrites(versionedRows(pool, { table: 'documents' }));
 * ```
 */
export function versionedRows(
  db: MysqlQueryable,
  options: { readonly table: MysqlTableName; readonly versionColumn?: string },
): VersionedRows<MysqlKey, MysqlRow> {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['table', 'versionColumn']));
  const table = quoteTable(options.table);
  const versionColumn = options.versionColumn ?? 'version';
  const version = quoteIdentifier(versionColumn, 'options.versionColumn');
  return versionedStore<MysqlKey, MysqlRow>(
    {
      versionColumn,
      select(key) {
        const values: unknown[] = [];
        return selectRows(
          db,
          `SELECT * FROM ${table} WHERE ${renderConditions('key', key, values)}`,
          values,
        );
      },
      async update(key, expected, changes) {
        const written = await compareAndSet(db, {
          table: options.table,
          key,
          versionColumn,
          expectedVersion: expected,
          set: changes,
        });
        return { applied: written.applied };
      },
      async delete(key, expected) {
        const values: unknown[] = [];
        const where = renderConditions('key', key, values);
        values.push(expected);
        const header = await execute(
          db,
          `DELETE FROM ${table} WHERE ${where} AND ${version} = ?`,
          values,
        );
        return header.affectedRows > 0;
      },
      async insert(columns) {
        const names = Object.keys(columns).map((column) =>
          quoteIdentifier(column, 'values column'),
        );
        const parameters = Object.values(columns);
        try {
          await execute(
            db,
            `INSERT INTO ${table} (${[...names, version].join(', ')}) VALUES (${parameters.map(() => '?').join(', ')}, 1)`,
            parameters,
          );
          return { created: true };
        } catch (error) {
          if ((error as { errno?: unknown }).errno !== MYSQL_ERRORS.duplicateKey) throw error;
          return { created: false };
        }
      },
    },
    String(options.table),
  );
}
