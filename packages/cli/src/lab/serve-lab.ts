/** `raceguard lab --serve`: the lab service alone, as a target for `raceguard run`. */
import { checkInteger, checkNonNegative, checkShape } from './checks.js';
import { openLabDatabase } from './lab-database.js';
import { setUpLockers } from './lock-backends.js';
import { createLabServer } from './server.js';
import { SCENARIOS } from './scenarios/index.js';

/** Options of {@link serveLab}. */
export interface ServeLabOptions {
  /** Loopback port; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** The awaited pause between read and write, ms. @default 2 */
  readonly gapMs?: number;
  /** Connections to the database. @default 32 */
  readonly poolSize?: number;
  /** A postgres:// or mysql:// URL; unset: DATABASE_URL, else an embedded PostgreSQL. */
  readonly databaseUrl?: string;
  /** Aborts starting the database. */
  readonly signal?: AbortSignal;
}

/** A running lab service. */
export interface ServedLab extends AsyncDisposable {
  /** The service's base URL; `GET /` lists its routes and request bodies. */
  readonly url: string;
  /**
   * A connection string to the lab's database whose search path is the
   * lab's schema (PostgreSQL) or whose database is the lab's (MySQL), for
   * `sql()` checks of scenario files (`databaseUrl`).
   */
  readonly databaseUrl: string;
  /** The lab's schema (PostgreSQL) or database (MySQL). */
  readonly schema: string;
  /** The database's dialect. */
  readonly dialect: 'postgres' | 'mysql';
  /** `true` when an embedded PostgreSQL was started for it. */
  readonly embedded: boolean;
  close(): Promise<void>;
}

/**
 * Start PostgreSQL (embedded unless a URL is given) or connect to MySQL /
 * MariaDB (a mysql:// URL), create a scratch schema or database, and start
 * the lab service on a loopback port; close everything with `close()`.
 *
 * @example
 * ```ts
 * await using lab = await serveLab({ gapMs: 0 });
 * const report = await runScenario(labScenarios(lab.url, { scenarios: ['inventory'] })[0]);
 * ```
 */
export async function serveLab(options: ServeLabOptions = {}): Promise<ServedLab> {
  checkShape('options', options, 'object');
  if (options.port !== undefined) checkInteger('options.port', options.port, 0);
  if (options.gapMs !== undefined) checkNonNegative('options.gapMs', options.gapMs);
  if (options.poolSize !== undefined) checkInteger('options.poolSize', options.poolSize, 1);
  checkShape('options.signal', options.signal, 'signal?');
  const database = await openLabDatabase({
    databaseUrl: options.databaseUrl,
    ...(options.signal && { signal: options.signal }),
  });
  const pool = database.newPool(options.poolSize ?? 32);
  let url: string;
  let app: ReturnType<typeof createLabServer>;
  try {
    // MySQL's advisory-lock strategy takes GET_LOCK through a locker (nothing to tear down).
    const [lockers] = await setUpLockers(['advisory-lock'], [pool], [], () =>
      database.newPool(options.poolSize ?? 32),
    );
    app = createLabServer({
      pool,
      scenarios: SCENARIOS,
      gapMs: options.gapMs ?? 2,
      ...(lockers?.advisoryLock !== undefined && { advisoryLock: lockers.advisoryLock }),
    });
    url = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  } catch (error) {
    await database.close();
    throw error;
  }
  const close = async (): Promise<void> => {
    await app.close();
    await database.close();
  };
  return {
    url,
    databaseUrl: database.labUrl,
    schema: database.schema,
    dialect: database.dialect,
    embedded: database.embedded,
    close,
    [Symbol.asyncDispose]: close,
  };
}
