/**
 * Start-up DDL that several instances may run at once. `CREATE ... IF NOT
 * EXISTS` is not safe under concurrency in PostgreSQL: two sessions that
 * both find the table missing both create it, and the second fails on the
 * catalog's unique index (`23505 pg_type_typname_nsp_index`). Holding a
 * transaction-scoped advisory lock around the statements serialises them.
 */
import { advisoryLockKey } from './advisory.js';
import { runQuery } from './statements.js';
import type { Queryable } from './types.js';

/**
 * Run `statements` (each idempotent, `IF NOT EXISTS`) in one transaction
 * under an advisory lock named by `name`: one round trip, safe to call from
 * every instance at start-up, through a transaction-pooling proxy too.
 *
 * @example
 * ```ts
 * await createOnce(pool, `raceguard:ddl:${table}`, [`CREATE TABLE IF NOT EXISTS ${t} (...)`]);
 * ```
 */
export async function createOnce(
  db: Queryable,
  name: string,
  statements: readonly string[],
): Promise<void> {
  // One simple-protocol query: its statements form one implicit transaction,
  // so the transaction-scoped lock covers them all. The key is our own number.
  const lock = `SELECT pg_advisory_xact_lock(${advisoryLockKey(name).toString()})`;
  await runQuery(db, [lock, ...statements].join(';\n'));
}
