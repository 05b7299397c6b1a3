import { randomBytes } from 'node:crypto';
import { assertNonEmptyString } from '../core/validate.js';
import { quoteIdentifier } from '../postgres/identifiers.js';
import { assertQueryable, runQuery } from '../postgres/statements.js';
import type { Queryable } from '../postgres/types.js';

/** A schema created for one run, so concurrent runs on one server never collide. */
export interface ScratchSchema extends AsyncDisposable {
  /** The schema's name. */
  readonly name: string;
  /** pg connection `options` that make it the search path: `-c search_path=<name>`. */
  readonly connectionOptions: string;
  /** Drop the schema and everything in it. Idempotent. */
  drop(): Promise<void>;
}

/**
 * Create a uniquely named schema (`<prefix>_<pid>_<random>`). Connect with
 * `options: schema.connectionOptions` so unqualified table names resolve to it.
 *
 * @example
 * ```ts
 * await using schema = await createScratchSchema(adminPool, 'lab');
 * const pool = new pg.Pool({ connectionString: url, options: schema.connectionOptions });
 * ```
 */
export async function createScratchSchema(db: Queryable, prefix: string): Promise<ScratchSchema> {
  assertQueryable('db', db);
  assertNonEmptyString('prefix', prefix);
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`.toLowerCase();
  const quoted = quoteIdentifier(name, 'prefix');
  await runQuery(db, `CREATE SCHEMA ${quoted}`);
  let dropped: Promise<void> | undefined;
  const drop = (): Promise<void> =>
    (dropped ??= runQuery(db, `DROP SCHEMA IF EXISTS ${quoted} CASCADE`).then(() => undefined));
  return { name, connectionOptions: `-c search_path=${name}`, drop, [Symbol.asyncDispose]: drop };
}
