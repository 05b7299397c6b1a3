/**
 * Rows with an integer version column as versioned resources (the
 * `VersionStore` of `raceguard/http`'s conditional writes), over any SQL
 * dialect: the dialect supplies four version-checked statements, this
 * module the rules around them (version parsing, the unique-key check, the
 * version column kept out of client changes, reading back what is there
 * after a refused write).
 */
import { InvalidArgumentError, RaceguardError } from './errors.js';
import { assertPlainObject } from './validate.js';

/**
 * A client's changes name a column they may not write: the key, the
 * version column, or a column the table does not have. Nothing was
 * written. `raceguard/http`'s conditional writes answer it with a 400.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof FieldNotWritableError) return reply.code(400).send({ field: e.field }); throw e; }
 * ```
 */
export class FieldNotWritableError extends RaceguardError {
  /** The offending field, as the client sent it. */
  readonly field: string;
  readonly reason: 'key' | 'version' | 'unknown' | 'nothing';

  constructor(field: string, reason: 'key' | 'version' | 'unknown' | 'nothing', cause?: unknown) {
    const why = {
      key: 'is part of the resource key and cannot be changed',
      version: 'is the version column, which only the server changes',
      unknown: 'is not a column of the resource',
      nothing: 'is part of the resource key: the changes hold nothing else to write',
    }[reason];
    super('RACEGUARD_FIELD_NOT_WRITABLE', `field ${JSON.stringify(field)} ${why}`, {
      ...(cause === undefined ? {} : { cause }),
    });
    this.field = field;
    this.reason = reason;
  }
}

/** PostgreSQL's undefined_column (42703), MySQL's ER_BAD_FIELD_ERROR (1054), anywhere in the cause chain. */
function isUnknownColumn(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const { code, errno } = e as { code?: unknown; errno?: unknown };
    if (code === '42703' || errno === 1054 || code === 'ER_BAD_FIELD_ERROR') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The column a database's unknown-column message names, if one of `fields`. */
function unknownField(error: unknown, fields: readonly string[]): string {
  const message = (error as { message?: unknown }).message;
  const text = typeof message === 'string' ? message : '';
  return fields.find((f) => text.includes(`"${f}"`) || text.includes(`'${f}'`)) ?? fields[0] ?? '';
}

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

// An ETag that is not a version of ours matches nothing: no statement
// needed. Only the canonical form of an integer is one ("09" is not "9":
// entity tags compare character by character).
const isVersion = (text: string): boolean => /^(0|-?[1-9]\d{0,19})$/.test(text);

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
  /**
   * The columns a client may write: not the version column, not a key
   * column (one equal to the key is dropped: a PUT of the whole
   * representation carries it), and nothing undefined.
   */
  const writable = (
    argument: string,
    key: K,
    columns: Readonly<Record<string, unknown>>,
  ): Readonly<Record<string, unknown>> => {
    assertPlainObject(argument, columns);
    const kept: Record<string, unknown> = {};
    for (const [column, value] of Object.entries(columns)) {
      if (column === versionColumn) throw new FieldNotWritableError(column, 'version');
      if (Object.prototype.hasOwnProperty.call(key, column)) {
        if (String(value) === String(key[column])) continue;
        throw new FieldNotWritableError(column, 'key');
      }
      kept[column] = value;
    }
    return kept;
  };
  /** Runs a write; a column the table does not have is the client's error, not the database's. */
  const writing = async <T>(fields: readonly string[], write: () => Promise<T>): Promise<T> => {
    try {
      return await write();
    } catch (error) {
      if (isUnknownColumn(error))
        throw new FieldNotWritableError(unknownField(error, fields), 'unknown', error);
      throw error;
    }
  };
  return {
    read,
    async update(key, expectedVersion, changes) {
      const kept = writable('changes', key, changes);
      if (Object.keys(kept).length === 0) {
        throw new FieldNotWritableError(Object.keys(changes)[0] ?? '', 'nothing');
      }
      if (!isVersion(expectedVersion)) return { applied: false, current: await read(key) };
      const written = await writing(Object.keys(kept), () =>
        statements.update(key, expectedVersion, kept),
      );
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
      const columns = { ...writable('values', key, values), ...key };
      for (const [column, value] of Object.entries(columns)) {
        if (value === undefined)
          throw new InvalidArgumentError(`values.${column}`, 'a defined value', value);
      }
      const inserted = await writing(Object.keys(columns), () => statements.insert(columns));
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
