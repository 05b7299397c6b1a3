import { pause } from '../core/deadline.js';
import { InvalidArgumentError, messageOf } from '../core/errors.js';
import { LeaseLocker, leaseSettings, type LeaseRoundTrips } from '../core/lease-acquire.js';
import { LockBackendError, checkOptionNames } from '../core/lock.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { quoteTable, type MysqlTableName } from './identifiers.js';
import { assertMysqlQueryable, execute, selectRows } from './statements.js';
import type { MysqlQueryable, ResultHeader } from './types.js';

/**
 * Creates, if missing, the tables both MySQL lockers use: the lease table of
 * {@link MysqlLeaseLock} (`table`) and the AUTO_INCREMENT table that mints
 * the fencing tokens of `MysqlAdvisoryLock` (`tokenTable`). Idempotent: run
 * it from a migration or at start-up.
 *
 * @example
 * ```ts
 * await createMysqlLockTables(pool);
 * ```
 */
export async function createMysqlLockTables(
  db: MysqlQueryable,
  options: { readonly table?: MysqlTableName; readonly tokenTable?: MysqlTableName } = {},
): Promise<void> {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['table', 'tokenTable']));
  const table = quoteTable(options.table ?? 'raceguard_leases', 'options.table');
  const tokens = quoteTable(options.tokenTable ?? 'raceguard_lock_tokens', 'options.tokenTable');
  await execute(
    db,
    `CREATE TABLE IF NOT EXISTS ${table} (
      name varchar(191) NOT NULL PRIMARY KEY,
      owner varchar(64) NULL,
      token bigint NOT NULL DEFAULT 0,
      expires_at datetime(3) NOT NULL
    ) ENGINE=InnoDB`,
    [],
  );
  await execute(
    db,
    `CREATE TABLE IF NOT EXISTS ${tokens} (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB`,
    [],
  );
}

/** Options of {@link MysqlLeaseLock}. */
export interface MysqlLeaseLockOptions {
  /** A pool (or anything queryable); every operation is one autocommit statement. */
  readonly client: MysqlQueryable;
  /** The lease table (`createMysqlLockTables`). @default 'raceguard_leases' */
  readonly table?: MysqlTableName;
  /** Prepended to every key. @default '' */
  readonly prefix?: string;
  /** Default lease; at least 100 ms. @default 30000 */
  readonly ttlMs?: number;
  /** Longest pause between attempts while waiting. @default 50 */
  readonly pollMs?: number;
  /** Share of the lease subtracted for clock drift. @default 0.01 */
  readonly driftFactor?: number;
}

/**
 * A lease lock kept in a MySQL / MariaDB table: a grant is one conditional
 * `UPDATE` of the key's row (owner, token, expiry by the server's clock)
 * that also bumps the key's fencing token and returns it through
 * `LAST_INSERT_ID()` in the same round trip. Tokens only grow per key (the
 * row stays when released). A crashed holder frees its key when the lease
 * runs out. No session state: it works through any pooling. Waiters poll
 * every `pollMs`.
 *
 * @example
 * ```ts
 * await createMysqlLockTables(pool);
 * const locks = new MysqlLeaseLock({ client: pool });
 * await withLock(locks, `invoice:${id}`, (lock) => send(id, lock.token), { ttlMs: 10_000 });
 * ```
 */
export class MysqlLeaseLock extends LeaseLocker {
  readonly #db: MysqlQueryable;
  readonly #tableName: string;
  readonly #prefix: string;
  readonly #sql: {
    ensure: string;
    acquire: string;
    remaining: string;
    extend: string;
    release: string;
  };

  constructor(options: MysqlLeaseLockOptions) {
    assertPlainObject('options', options);
    checkOptionNames('MysqlLeaseLock', options, [
      'client',
      'table',
      'prefix',
      'ttlMs',
      'pollMs',
      'driftFactor',
    ]);
    super(
      leaseSettings('MysqlLeaseLock', options, {
        pollMs: 50,
        silent: 'MySQL did not answer in time',
      }),
    );
    assertMysqlQueryable('options.client', options.client);
    this.#db = options.client;
    this.#prefix = options.prefix ?? '';
    if (typeof this.#prefix !== 'string')
      throw new InvalidArgumentError('options.prefix', 'a string', this.#prefix);
    const table = options.table ?? 'raceguard_leases';
    this.#tableName = typeof table === 'string' ? table : table.join('.');
    const t = quoteTable(table, 'options.table');
    const leaseEnds = 'TIMESTAMPADD(MICROSECOND, ? * 1000, NOW(3))';
    this.#sql = {
      // The key's row, created free once; it is never deleted, so its token only grows.
      ensure: `INSERT INTO ${t} (name, owner, token, expires_at) VALUES (?, NULL, 0, NOW(3)) ON DUPLICATE KEY UPDATE name = name`,
      acquire: `UPDATE ${t} SET owner = ?, token = LAST_INSERT_ID(token + 1), expires_at = ${leaseEnds} WHERE name = ? AND expires_at <= NOW(3)`,
      remaining: `SELECT GREATEST(0, TIMESTAMPDIFF(MICROSECOND, NOW(3), expires_at) / 1000) AS ms FROM ${t} WHERE name = ?`,
      extend: `UPDATE ${t} SET expires_at = ${leaseEnds} WHERE name = ? AND owner = ? AND expires_at > NOW(3)`,
      release: `UPDATE ${t} SET expires_at = NOW(3), owner = NULL WHERE name = ? AND owner = ? AND expires_at > NOW(3)`,
    };
  }

  async #run(sql: string, values: unknown[], what: string): Promise<ResultHeader> {
    try {
      return await execute(this.#db, sql, values);
    } catch (error) {
      // The table was never created (ER_NO_SUCH_TABLE): say which, and what creates it.
      if ((error as { errno?: unknown } | null)?.errno === 1146) {
        throw new LockBackendError(
          `MySQL failed to ${what}: the lease table ${JSON.stringify(this.#tableName)} does not exist; create it once, e.g. in a migration, with createMysqlLockTables(pool${this.#tableName === 'raceguard_leases' ? '' : `, { table: ${JSON.stringify(this.#tableName)} }`})`,
          error,
        );
      }
      throw new LockBackendError(`MySQL failed to ${what}: ${messageOf(error)}`, error);
    }
  }

  async #release(name: string, owner: string): Promise<void> {
    await this.#run(this.#sql.release, [name, owner], 'release a lock');
  }

  /** The round trips on `key`: one statement each; waits poll the lease. */
  protected roundTrips(key: string): LeaseRoundTrips {
    const name = this.#prefix + key;
    return {
      prepare: () => this.#run(this.#sql.ensure, [name], 'prepare a lock'),
      // The new token comes back through LAST_INSERT_ID() in the same round trip.
      tryGrant: async (owner, ttlMs) => {
        const header = await this.#run(this.#sql.acquire, [owner, ttlMs, name], 'acquire a lock');
        return header.affectedRows > 0 ? { token: BigInt(header.insertId) } : {};
      },
      renew: async (owner, leaseMs) =>
        (await this.#run(this.#sql.extend, [leaseMs, name, owner], 'extend a lock')).affectedRows >
        0,
      release: (owner) => this.#release(name, owner),
      waitForRelease: async (wait) => {
        const [left] = await wait.beforeDeadline(
          selectRows(this.#db, this.#sql.remaining, [name]).catch((error: unknown) => {
            throw new LockBackendError(`MySQL failed to read a lease: ${messageOf(error)}`, error);
          }),
        );
        await pause(wait.pauseMs(Number(left?.ms ?? 0)), { signal: wait.signal });
      },
    };
  }
}
