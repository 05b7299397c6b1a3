/**
 * The small slice of a PostgreSQL driver that raceguard calls. `pg`'s `Pool`,
 * `PoolClient` and `Client` satisfy these structurally, so raceguard never
 * imports the driver itself.
 */

/** A result row as the driver returns it. */
export type Row = Record<string, unknown>;

/** What a query resolves to. */
export interface QueryResultLike {
  readonly rows: Row[];
  readonly rowCount: number | null;
  /** The command tag, e.g. `COMMIT` or `ROLLBACK`. */
  readonly command?: string;
}

/** A query with an optional statement name (a named statement is parsed once per connection). */
export interface QueryConfigLike {
  readonly text: string;
  readonly values?: unknown[];
  readonly name?: string;
}

/** Anything that runs a parameterised query: a pool, a client, a {@link Transaction}. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<QueryResultLike>;
  query(config: QueryConfigLike): Promise<QueryResultLike>;
}

/** A connection checked out of a pool. */
export interface PoolClientLike extends Queryable {
  /** Return the connection; passing an error destroys it instead. */
  release(error?: Error | boolean): void;
}

/** A connection pool (`pg.Pool`). */
export interface PoolLike extends Queryable {
  connect(): Promise<PoolClientLike>;
  /** `true` once `end()` was called (pg's `Pool` has it). */
  readonly ending?: boolean;
  /** `true` once the pool has shut down (pg's `Pool` has it). */
  readonly ended?: boolean;
}

/** A value raceguard binds as a query parameter. */
export type SqlValue = string | number | bigint | boolean | Date | Uint8Array | null;

/** Equality conditions: column name to value. */
export type KeyValues = Readonly<Record<string, SqlValue>>;
