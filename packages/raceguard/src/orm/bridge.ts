import type { MysqlQueryable, ResultHeader } from '../mysql/types.js';
import type { Transaction } from '../postgres/transaction.js';
import type { QueryConfigLike, QueryResultLike, Row } from '../postgres/types.js';
import type { SqlTarget } from './relational.js';

/** What one statement run through an ORM answered, in the driver-neutral form the adapters produce. */
export interface BridgeResult {
  readonly rows: Row[];
  /** Rows written, for INSERT / UPDATE / DELETE; `undefined` for a query that returned rows. */
  readonly affectedRows: number | undefined;
  /** MySQL: rows really changed (not merely matched). */
  readonly changedRows?: number | undefined;
  /** MySQL: `LAST_INSERT_ID()` after the statement. */
  readonly insertId?: number | undefined;
}

/** Runs one parameterised statement on the ORM's connection. */
export type RunStatement = (text: string, values: readonly unknown[]) => Promise<BridgeResult>;

/**
 * A {@link SqlTarget} over a statement runner: the PostgreSQL side answers
 * like `pg`, the MySQL side like `mysql2/promise`.
 */
export function bridgeTarget(dialect: 'postgres' | 'mysql', run: RunStatement): SqlTarget {
  if (dialect === 'mysql') {
    const db: MysqlQueryable = {
      async query(sql: string, values?: unknown[]): Promise<[unknown, unknown]> {
        const result = await run(sql, values ?? []);
        if (result.affectedRows === undefined) return [result.rows, undefined];
        const header: ResultHeader = {
          affectedRows: result.affectedRows,
          insertId: result.insertId ?? 0,
          ...(result.changedRows !== undefined && { changedRows: result.changedRows }),
        };
        return [header, undefined];
      },
    };
    return { dialect, db };
  }
  const query = async (
    textOrConfig: string | QueryConfigLike,
    values?: unknown[],
  ): Promise<QueryResultLike> => {
    const config = typeof textOrConfig === 'string' ? { text: textOrConfig, values } : textOrConfig;
    const result = await run(config.text, config.values ?? []);
    return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
  };
  const db: Transaction = { query, attempt: 1, isolation: 'read committed', signal: undefined };
  return { dialect, db };
}

/**
 * One {@link SqlTarget} per ORM database object, built once by `build`
 * (which looks up the dialect) and remembered while the object lives.
 */
export function cachedTargets<Db extends object>(
  build: (db: Db) => SqlTarget,
): (db: Db) => SqlTarget {
  const targets = new WeakMap<Db, SqlTarget>();
  return (db) => {
    let target = targets.get(db);
    if (target === undefined) {
      target = build(db);
      targets.set(db, target);
    }
    return target;
  };
}
