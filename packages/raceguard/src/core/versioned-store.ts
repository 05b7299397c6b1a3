/**
 * Rows with an integer version column as versioned resources (the
 * `VersionStore` of `raceguard/http`'s conditional writes), over any SQL
 * dialect: the dialect supplies four version-checked statements, this
 * module the rules around them (version parsing, the unique-key check, the
 * version column kept out of client changes, reading back what is there
 * after a refused write).
 */
import { InvalidArgumentError } from './errors.js';
import { assertPlainObject } from './validate.js';

type Row = Record<string, unknown>;

/** A row and its version, as a decimal string. */
export interface VersionedRow<R extends Row = Row> {
  readonly row: R;
  readonly version: string;
}

/** The statements a dialect runs; each checks the version where it writes. */
export interface VersionedStatements<K, R extends Row> {
  readonly versionColumn: string;
  /** The rows matching `key`. */
  select(key: K): Promise<readonly R[]>;
  /** Writes `changes` and bumps the version if it is still `expected`; the written row when the dialect returns it. */
  update(
    key: K,
    expected: string,
    changes: Readonly<Record<string, unknown>>,
  ): Promise<{ readonly applied: boolean; readonly row?: R }>;
  /** Deletes if the version is still `expected`. */
  delete(key: K, expected: string): Promise<boolean>;
  /** Inserts `columns` with version 1; `created: false` when the key exists. The row when the dialect returns it. */
  insert(
    columns: Readonly<Record<string, unknown>>,
  ): Promise<{ readonly created: boolean; readonly row?: R }>;
}

/** Rows of one table as versioned resources. */
export interface VersionedRows<K, R extends Row = Row> {
  read(key: K): Promise<VersionedRow<R> | undefined>;
  update(
    key: K,
    expectedVersion: string,
    changes: Readonly<Record<string, unknown>>,
  ): Promise<
    | { readonly applied: true; readonly current: VersionedRow<R> }
    | { readonly applied: false; readonly current: VersionedRow<R> | undefined }
  >;
  delete(
    key: K,
    expectedVersion: string,
  ): Promise<
    | { readonly applied: true }
    | { readonly applied: false; readonly current: VersionedRow<R> | undefined }
  >;
  create(
    key: K,
    values: Readonly<Record<string, unknown>>,
  ): Promise<
    | { readonly created: true; readonly current: VersionedRow<R> }
    | { readonly created: false; readonly current: VersionedRow<R> }
  >;
}

// An ETag that is not a version of ours matches nothing: no statement needed.
const isVersion = (text: string): boolean => /^-?\d{1,20}$/.test(text);

/** The store over a dialect's statements. */
export function versionedStore<K extends Readonly<Record<string, unknown>>, R extends Row>(
  statements: VersionedStatements<K, R>,
  tableName: string,
): VersionedRows<K, R> {
  const { versionColumn } = statements;
  const versioned = (row: R): VersionedRow<R> => {
    const value = row[versionColumn];
    if (
      !(typeof value === 'number' && Number.isSafeInteger(value)) &&
      !(typeof value === 'string' && /^-?\d+$/.test(value)) &&
      typeof value !== 'bigint'
    ) {
      throw new InvalidArgumentError(
        'options.versionColumn',
        `an integer column (${tableName}.${versionColumn} holds ${typeof value})`,
        value,
      );
    }
    return { row, version: String(value) };
  };
  const read = async (key: K): Promise<VersionedRow<R> | undefined> => {
    const rows = await statements.select(key);
    if (rows.length > 1) {
      throw new InvalidArgumentError(
        'key',
        'the columns of a unique key (it matched several rows)',
        key,
      );
    }
    return rows[0] === undefined ? undefined : versioned(rows[0]);
  };
  const withoutVersion = (argument: string, columns: Readonly<Record<string, unknown>>): void => {
    assertPlainObject(argument, columns);
    if (versionColumn in columns) {
      throw new InvalidArgumentError(
        argument,
        `columns other than the version column ${versionColumn}`,
        columns,
      );
    }
  };
  return {
    read,
    async update(key, expectedVersion, changes) {
      withoutVersion('changes', changes);
      if (!isVersion(expectedVersion)) return { applied: false, current: await read(key) };
      const written = await statements.update(key, expectedVersion, changes);
      if (!written.applied) return { applied: false, current: await read(key) };
      // Without RETURNING, read back: a later writer may already show here, and the ETag then says so.
      const current = written.row === undefined ? await read(key) : versioned(written.row);
      return current === undefined ? { applied: false, current } : { applied: true, current };
    },
    async delete(key, expectedVersion) {
      if (!isVersion(expectedVersion)) return { applied: false, current: await read(key) };
      return (await statements.delete(key, expectedVersion))
        ? { applied: true }
        : { applied: false, current: await read(key) };
    },
    async create(key, values) {
      withoutVersion('values', values);
      const columns = { ...values, ...key };
      for (const [column, value] of Object.entries(columns)) {
        if (value === undefined)
          throw new InvalidArgumentError(`values.${column}`, 'a defined value', value);
      }
      const inserted = await statements.insert(columns);
      const current = inserted.row === undefined ? await read(key) : versioned(inserted.row);
      if (current === undefined) {
        // The conflict was on another unique column than the key: nothing to show as "current".
        throw new InvalidArgumentError(
          'values',
          'values that violate no unique constraint but the key',
          values,
        );
      }
      return inserted.created ? { created: true, current } : { created: false, current };
    },
  };
}
