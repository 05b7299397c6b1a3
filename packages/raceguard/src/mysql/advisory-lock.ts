import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { SessionLocker, type LockSession } from '../core/session-acquire.js';
import { checkOptionNames } from '../core/lock.js';
import { assertPlainObject } from '../core/validate.js';
import { quoteTable, type MysqlTableName } from './identifiers.js';
import { execute, selectRows } from './statements.js';
import type { MysqlPool, MysqlPoolConnection } from './types.js';

/** A pooled mysql2 connection; its core connection reports failures. */
interface EventedConnection extends MysqlPoolConnection {
  readonly connection?: {
    on?(event: 'error' | 'end', listener: () => void): unknown;
    removeListener?(event: 'error' | 'end', listener: () => void): unknown;
  };
}

/** Options of {@link MysqlAdvisoryLock}. */
export interface MysqlAdvisoryLockOptions {
  /** The pool; each held lock keeps one of its connections checked out (a `GET_LOCK` belongs to the session). */
  readonly client: MysqlPool;
  /** Prepended to every key (lock names longer than 64 characters are hashed). @default '' */
  readonly prefix?: string;
  /** The AUTO_INCREMENT table that mints fencing tokens (`createMysqlLockTables`). @default 'raceguard_lock_tokens' */
  readonly tokenTable?: MysqlTableName;
}

const NO_LEASE =
  'has no lease: a GET_LOCK is held by its session until release or until the session ends';

/**
 * `GET_LOCK` named locks behind the common lock API, with the pooling trap
 * handled: a `GET_LOCK` belongs to the session, not to a transaction, so a
 * held lock keeps its connection checked out of the pool until `release()`
 * (or dispose), and is released on that same connection. A connection that
 * fails loses the lock: the handle's `signal` aborts. A wait that ends
 * early (deadline or `signal`) destroys its connection rather than return a
 * session that may still be waiting to the pool. Fencing tokens come from
 * an AUTO_INCREMENT table right after the grant. No lease: `ttlMs` and
 * `autoExtend` are refused; `extend()` checks that the session still holds it.
 *
 * @example
 * ```ts
 * await createMysqlLockTables(pool);
 * const locks = new MysqlAdvisoryLock({ client: pool });
 * await withLock(locks, 'nightly-report', () => buildReport(), { waitMs: 0 });
 * ```
 */
export class MysqlAdvisoryLock extends SessionLocker {
  readonly #pool: MysqlPool;
  readonly #prefix: string;
  readonly #tokenTable: string;

  constructor(options: MysqlAdvisoryLockOptions) {
    assertPlainObject('options', options);
    checkOptionNames('MysqlAdvisoryLock', options, ['client', 'prefix', 'tokenTable'], {
      ttlMs: NO_LEASE,
      pollMs: 'does not poll: GET_LOCK waits in the server',
    });
    super({
      lease: { backend: 'MysqlAdvisoryLock', ttlMs: undefined, noLease: NO_LEASE },
      server: 'MySQL',
    });
    if (typeof (options.client as Partial<MysqlPool> | undefined)?.getConnection !== 'function') {
      throw new InvalidArgumentError('options.client', 'a mysql2/promise pool', options.client);
    }
    this.#pool = options.client;
    this.#prefix = options.prefix ?? '';
    if (typeof this.#prefix !== 'string')
      throw new InvalidArgumentError('options.prefix', 'a string', this.#prefix);
    this.#tokenTable = quoteTable(
      options.tokenTable ?? 'raceguard_lock_tokens',
      'options.tokenTable',
    );
  }

  /** The server-side lock name: at most 64 characters. */
  #name(key: string): string {
    const name = this.#prefix + key;
    return name.length <= 64
      ? name
      : `rg:${createHash('sha256').update(name).digest('hex').slice(0, 61)}`;
  }

  /** A pooled connection, and `GET_LOCK`'s statements on it. */
  protected async connect(key: string): Promise<LockSession> {
    const connection: EventedConnection = await this.#pool.getConnection();
    const name = this.#name(key);
    const destroy = (): void => {
      // Destroying the session ends its wait and frees whatever it holds.
      if (connection.destroy !== undefined) connection.destroy();
      else connection.release();
    };
    return {
      lock: async (waitMs, remainingMs, beforeDeadline) => {
        // GET_LOCK's timeout is in seconds (MariaDB does not wait forever on a negative one: a year stands for it).
        const seconds =
          waitMs === 0
            ? 0
            : Number.isFinite(remainingMs)
              ? Math.max(0.001, remainingMs / 1000)
              : 31_536_000;
        const [row] = await beforeDeadline(
          selectRows(connection, 'SELECT GET_LOCK(?, ?) AS locked', [name, seconds]),
        );
        return Number(row?.locked) === 1;
      },
      mintToken: async (beforeDeadline) => {
        const header = await beforeDeadline(
          execute(connection, `INSERT INTO ${this.#tokenTable} () VALUES ()`, []),
        );
        // Keep the token table small: every token below the newest is spent.
        await beforeDeadline(
          execute(connection, `DELETE FROM ${this.#tokenTable} WHERE id < ?`, [header.insertId]),
        );
        return BigInt(header.insertId);
      },
      watch: (onFailure) => {
        connection.connection?.on?.('error', onFailure);
        connection.connection?.on?.('end', onFailure);
        return () => {
          connection.connection?.removeListener?.('error', onFailure);
          connection.connection?.removeListener?.('end', onFailure);
        };
      },
      unlock: async () => {
        await selectRows(connection, 'SELECT RELEASE_LOCK(?) AS released', [name]);
      },
      stillHeld: async () => {
        const [row] = await selectRows(
          connection,
          'SELECT IS_USED_LOCK(?) = CONNECTION_ID() AS mine',
          [name],
        );
        return Number(row?.mine) === 1;
      },
      giveBack: () => connection.release(),
      destroy,
    };
  }
}
