/**
 * The subset of mysql2's promise API raceguard calls, typed structurally so
 * that `mysql2` stays an optional peer (a `Pool` from `mysql2/promise`, or
 * one of its connections, fits).
 */

/** What an INSERT, UPDATE or DELETE answers. */
export interface ResultHeader {
  /** Rows matched: with mysql2's default `FOUND_ROWS` flag, also the rows the statement did not change. */
  readonly affectedRows: number;
  /** Rows the statement really changed (0 when the new values equal the old ones). */
  readonly changedRows?: number;
  /** `LAST_INSERT_ID()` after the statement: an AUTO_INCREMENT id, or the value passed to `LAST_INSERT_ID(expr)`. */
  readonly insertId: number;
}

/** A row as mysql2 returns it. */
export type MysqlRow = Record<string, unknown>;

/** Anything that runs a parameterised statement: a pool or a connection of mysql2/promise. */
export interface MysqlQueryable {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
}

/** A connection taken from a pool, returned with `release()`. */
export interface MysqlPoolConnection extends MysqlQueryable {
  release(): void;
  /** Closes the connection instead of returning it (after a failure that left it unusable). */
  destroy?(): void;
}

/** A mysql2/promise pool. */
export interface MysqlPool extends MysqlQueryable {
  getConnection(): Promise<MysqlPoolConnection>;
}

/** Equality conditions identifying rows, e.g. `{ id: 42 }`. */
export type MysqlKey = Readonly<Record<string, string | number | bigint | boolean | Date>>;
