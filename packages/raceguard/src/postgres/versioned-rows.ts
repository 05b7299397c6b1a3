import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
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
export interface VersionedRow {
  readonly row: Row;
  readonly version: string;
}

/**
 * Rows of one table as versioned resources, for the conditional writes of
 * `raceguard/http` (`conditionalWrites`): every update and delete checks the
 * version in the statement that writes it, and bumps it.
 */
export interface VersionedRows {
  read(key: KeyValues): Promise<VersionedRow | undefined>;
  update(
    key: KeyValues,
    expectedVersion: string,
    changes: Readonly<Record<string, unknown>>,
  ): Promise<
    | { readonly applied: true; readonly current: VersionedRow }
    | { readonly applied: false; readonly current: VersionedRow | undefined }
  >;
  delete(
    key: KeyValues,
    expectedVersion: string,
  ): Promise<
    | { readonly applied: true }
    | { readonly applied: false; readonly current: VersionedRow | undefined }
  >;
  create(
    key: KeyValues,
    values: Readonly<Record<string, unknown>>,
  ): Promise<
    | { readonly created: true; readonly current: VersionedRow }
    | { readonly created: false; readonly current: VersionedRow }
  >;
}

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

  const versioned = (row: Row): VersionedRow => {
    const value = row[versionColumn];
    if (
      !(typeof value === 'number' && Number.isSafeInteger(value)) &&
      !(typeof value === 'string' && /^-?\d+$/.test(value)) &&
      typeof value !== 'bigint'
    ) {
      throw new InvalidArgumentError(
        'options.versionColumn',
        `an integer column (${options.table.toString()}.${versionColumn} holds ${typeof value})`,
        value,
      );
    }
    return { row, version: String(value) };
  };
  // An ETag that is not a version of ours matches nothing: no statement needed.
  const isVersion = (text: string): boolean => /^-?\d{1,20}$/.test(text);

  const read = async (key: KeyValues): Promise<VersionedRow | undefined> => {
    const values: unknown[] = [];
    const where = renderConditions('key', key, values);
    const { rows } = await runQuery(db, `SELECT * FROM ${table} WHERE ${where}`, values);
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
    async update(key, expectedVersion, changes) {
      if (Object.keys(changes).includes(versionColumn)) {
        throw new InvalidArgumentError(
          'changes',
          `columns other than the version column ${versionColumn}`,
          changes,
        );
      }
      if (!isVersion(expectedVersion)) return { applied: false, current: await read(key) };
      const result = await compareAndSet(db, {
        table: options.table,
        key,
        versionColumn,
        expectedVersion,
        set: changes,
      });
      return result.applied
        ? { applied: true, current: versioned(result.row!) }
        : { applied: false, current: await read(key) };
    },
    async delete(key, expectedVersion) {
      if (!isVersion(expectedVersion)) return { applied: false, current: await read(key) };
      const values: unknown[] = [];
      const where = renderConditions('key', key, values);
      values.push(expectedVersion);
      const { rows } = await runQuery(
        db,
        `DELETE FROM ${table} WHERE ${where} AND ${version} = $${values.length} RETURNING ${version}`,
        values,
      );
      return rows.length > 0 ? { applied: true } : { applied: false, current: await read(key) };
    },
    async create(key, values) {
      assertPlainObject('values', values);
      const columns = { ...values, ...key };
      if (versionColumn in columns) {
        throw new InvalidArgumentError(
          'values',
          `columns other than the version column ${versionColumn}`,
          values,
        );
      }
      const names = Object.keys(columns).map((column) => quoteIdentifier(column, 'values column'));
      const parameters = Object.values(columns);
      for (const [column, value] of Object.entries(columns)) {
        if (value === undefined)
          throw new InvalidArgumentError(`values.${column}`, 'a defined value', value);
      }
      const { rows } = await runQuery(
        db,
        `INSERT INTO ${table} (${[...names, version].join(', ')}) VALUES (${parameters.map((_, i) => `$${i + 1}`).join(', ')}, 1) ON CONFLICT DO NOTHING RETURNING *`,
        parameters,
      );
      if (rows[0] !== undefined) return { created: true, current: versioned(rows[0]) };
      const current = await read(key);
      if (current === undefined) {
        // The conflict was on another unique column than the key: nothing to show as "current".
        throw new InvalidArgumentError(
          'values',
          'values that violate no unique constraint but the key',
          values,
        );
      }
      return { created: false, current };
    },
  };
}
