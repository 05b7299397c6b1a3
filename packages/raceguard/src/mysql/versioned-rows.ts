import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { compareAndSet } from './atomic.js';
import { MYSQL_ERRORS } from './errors.js';
import { quoteIdentifier, quoteTable, type MysqlTableName } from './identifiers.js';
import { assertMysqlQueryable, execute, renderConditions, selectRows } from './statements.js';
import type { MysqlKey, MysqlQueryable, MysqlRow } from './types.js';

/** A row and its version, as a decimal string. */
export interface MysqlVersionedRow {
  readonly row: MysqlRow;
  readonly version: string;
}

/**
 * The rows of one table as versioned resources for `conditionalWrites` of
 * `raceguard/http` (ETag / If-Match), on MySQL and MariaDB: every update and
 * delete checks the version in the statement that writes it.
 *
 * @example
 * ```ts
 * const documents = conditionalWrites(versionedRows(pool, { table: 'documents' }));
 * ```
 */
export function versionedRows(
  db: MysqlQueryable,
  options: { readonly table: MysqlTableName; readonly versionColumn?: string },
) {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['table', 'versionColumn']));
  const table = quoteTable(options.table);
  const versionColumn = options.versionColumn ?? 'version';
  const version = quoteIdentifier(versionColumn, 'options.versionColumn');
  const isVersion = (text: string): boolean => /^-?\d{1,20}$/.test(text);
  const versioned = (row: MysqlRow): MysqlVersionedRow => {
    const value = row[versionColumn];
    if (
      !(typeof value === 'number' && Number.isSafeInteger(value)) &&
      !(typeof value === 'string' && /^-?\d+$/.test(value)) &&
      typeof value !== 'bigint'
    ) {
      throw new InvalidArgumentError(
        'options.versionColumn',
        `an integer column (${versionColumn} holds ${typeof value})`,
        value,
      );
    }
    return { row, version: String(value) };
  };
  const read = async (key: MysqlKey): Promise<MysqlVersionedRow | undefined> => {
    const values: unknown[] = [];
    const rows = await selectRows(
      db,
      `SELECT * FROM ${table} WHERE ${renderConditions('key', key, values)}`,
      values,
    );
    if (rows.length > 1)
      throw new InvalidArgumentError(
        'key',
        'the columns of a unique key (it matched several rows)',
        key,
      );
    return rows[0] === undefined ? undefined : versioned(rows[0]);
  };
  return {
    read,
    async update(
      key: MysqlKey,
      expectedVersion: string,
      changes: Readonly<Record<string, unknown>>,
    ) {
      if (versionColumn in changes)
        throw new InvalidArgumentError(
          'changes',
          `columns other than the version column ${versionColumn}`,
          changes,
        );
      if (!isVersion(expectedVersion)) return { applied: false as const, current: await read(key) };
      const written = await compareAndSet(db, {
        table: options.table,
        key,
        versionColumn,
        expectedVersion,
        set: changes,
      });
      const current = await read(key);
      // Read back after the write: MySQL has no RETURNING; a later writer may already show here, which the ETag then says.
      return written.applied && current !== undefined
        ? { applied: true as const, current }
        : { applied: false as const, current };
    },
    async delete(key: MysqlKey, expectedVersion: string) {
      if (!isVersion(expectedVersion)) return { applied: false as const, current: await read(key) };
      const values: unknown[] = [];
      const where = renderConditions('key', key, values);
      values.push(expectedVersion);
      const header = await execute(
        db,
        `DELETE FROM ${table} WHERE ${where} AND ${version} = ?`,
        values,
      );
      return header.affectedRows > 0
        ? { applied: true as const }
        : { applied: false as const, current: await read(key) };
    },
    async create(key: MysqlKey, values: Readonly<Record<string, unknown>>) {
      const columns = { ...values, ...key };
      if (versionColumn in columns)
        throw new InvalidArgumentError(
          'values',
          `columns other than the version column ${versionColumn}`,
          values,
        );
      const names = Object.keys(columns).map((column) => quoteIdentifier(column, 'values column'));
      const parameters = Object.values(columns);
      let created = true;
      try {
        await execute(
          db,
          `INSERT INTO ${table} (${[...names, version].join(', ')}) VALUES (${parameters.map(() => '?').join(', ')}, 1)`,
          parameters,
        );
      } catch (error) {
        if ((error as { errno?: unknown }).errno !== MYSQL_ERRORS.duplicateKey) throw error;
        created = false;
      }
      const current = await read(key);
      if (current === undefined) {
        throw new InvalidArgumentError(
          'values',
          'values that violate no unique constraint but the key',
          values,
        );
      }
      return created ? { created: true as const, current } : { created: false as const, current };
    },
  };
}
