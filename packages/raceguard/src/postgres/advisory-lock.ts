import { InvalidArgumentError } from '../core/errors.js';
import { SessionLocker, type BeforeDeadline, type LockSession } from '../core/session-acquire.js';
import { checkOptionNames } from '../core/lock.js';
import { assertPlainObject } from '../core/validate.js';
import { advisoryLockKey } from './advisory.js';
import { DatabaseError } from './errors.js';
import { quoteIdentifier } from './identifiers.js';
import { runQuery } from './statements.js';
import type { PoolClientLike, PoolLike } from './types.js';

/** A pooled connection that reports its own failure (pg's `PoolClient`). */
interface EventedClient extends PoolClientLike {
  on?(event: 'error' | 'end', listener: () => void): unknown;
  removeListener?(event: 'error' | 'end', listener: () => void): unknown;
}

/** Options of {@link PostgresAdvisoryLock}. */
export interface PostgresAdvisoryLockOptions {
  /** The pool; each held lock keeps one of its connections checked out. */
  readonly client: PoolLike;
  /**
   * Prepended to every key before it is hashed to the lock's 64-bit id, so
   * several applications can share a database without sharing locks.
   * @default ''
   */
  readonly prefix?: string;
  /**
   * Sequence that mints fencing tokens (created by `createLockTables`).
   * @default 'raceguard_locks_tokens'
   */
  readonly tokenSequence?: string;
}

const NO_LEASE =
  'has no lease: the lock is held by a database session until release or until the session ends';

/**
 * Session-level PostgreSQL advisory locks behind the common lock API: a
 * held lock is a connection checked out of the pool holding
 * `pg_advisory_lock(key)`. Waiters queue in PostgreSQL's lock manager, in
 * arrival order, and are woken by it (no polling). Tokens come from a
 * sequence right after the grant. A connection that dies frees its locks:
 * the handle's `signal` aborts. There is no lease: `ttlMs` and
 * `autoExtend` are refused, and `extend()` checks that the session is
 * still alive.
 *
 * A wait that ends early (deadline or `signal`) destroys its connection
 * instead of cancelling the statement by backend pid, so a cancel can never
 * reach another statement on a reused connection; the server ends the
 * orphaned wait at its `lock_timeout` (set to the caller's wait) or, on
 * PostgreSQL 14+, within a second through `client_connection_check_interval`.
 *
 * Session locks need a session: they do not work through a pooler in
 * transaction mode (PgBouncer `pool_mode=transaction`); use
 * {@link PostgresLeaseLock} there.
 *
 * @example
 * ```ts
 * await createLockTables(pool); // for the token sequence
 * const locks = new PostgresAdvisoryLock({ client: pool });
 * await withLock(locks, 'nightly-report', () => buildReport(), { waitMs: 0 });
 * ```
 */
export class PostgresAdvisoryLock extends SessionLocker {
  readonly #pool: PoolLike;
  readonly #prefix: string;
  readonly #nextToken: string;

  constructor(options: PostgresAdvisoryLockOptions) {
    assertPlainObject('options', options);
    checkOptionNames('PostgresAdvisoryLock', options, ['client', 'prefix', 'tokenSequence'], {
      ttlMs: NO_LEASE,
      pollMs: "does not poll: waiters queue in PostgreSQL's lock manager",
      pool: 'calls it client (pool was its name before 0.1)',
    });
    super({
      lease: { backend: 'PostgresAdvisoryLock', ttlMs: undefined, noLease: NO_LEASE },
      server: 'PostgreSQL',
    });
    const pool = options.client as Partial<PoolLike> | undefined;
    if (typeof pool?.connect !== 'function') {
      throw new InvalidArgumentError('options.client', 'a pg Pool', pool);
    }
    this.#pool = options.client;
    this.#prefix = options.prefix ?? '';
    if (typeof this.#prefix !== 'string')
      throw new InvalidArgumentError('options.prefix', 'a string', this.#prefix);
    const sequence = quoteIdentifier(
      options.tokenSequence ?? 'raceguard_locks_tokens',
      'options.tokenSequence',
    );
    this.#nextToken = `SELECT nextval('${sequence.replaceAll("'", "''")}') AS token`;
  }

  /** A pooled connection, and the advisory lock's statements on it. */
  protected async connect(key: string): Promise<LockSession> {
    const client: EventedClient = await this.#pool.connect();
    const id = advisoryLockKey(this.#prefix + key).toString();
    return {
      lock: (waitMs, remainingMs, beforeDeadline) =>
        waitMs === 0
          ? beforeDeadline(
              runQuery(client, 'SELECT pg_try_advisory_lock($1::bigint) AS locked', [id]),
            ).then(({ rows }) => rows[0]?.locked === true)
          : waitInQueue(client, id, remainingMs, beforeDeadline),
      mintToken: async (beforeDeadline) =>
        BigInt(String((await beforeDeadline(runQuery(client, this.#nextToken))).rows[0]?.token)),
      watch: (onFailure) => {
        client.on?.('error', onFailure);
        client.on?.('end', onFailure);
        return () => {
          client.removeListener?.('error', onFailure);
          client.removeListener?.('end', onFailure);
        };
      },
      unlock: async () => {
        await runQuery(client, 'SELECT pg_advisory_unlock($1::bigint)', [id]);
      },
      // No lease: a session that answers still holds its advisory locks.
      stillHeld: async () => {
        await runQuery(client, 'SELECT 1');
        return true;
      },
      giveBack: () => client.release(),
      destroy: (cause) => client.release(cause instanceof Error ? cause : true),
    };
  }
}

/**
 * `pg_advisory_lock` with `lock_timeout` set to the time left (and, on
 * PostgreSQL 14+, `client_connection_check_interval` to a second, so an
 * abandoned wait ends soon after its connection does); both settings are
 * restored afterwards to what they were, not to a default. `false` when
 * the wait ran out (SQLSTATE 55P03).
 */
async function waitInQueue(
  client: PoolClientLike,
  id: string,
  remainingMs: number,
  beforeDeadline: BeforeDeadline,
): Promise<boolean> {
  const { rows } = await beforeDeadline(
    runQuery(
      client,
      "SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('client_connection_check_interval', true) AS check_interval",
    ),
  );
  const previous = rows[0] as { lock_timeout: string; check_interval: string | null };
  const lockTimeout = Number.isFinite(remainingMs)
    ? `${Math.max(1, Math.ceil(remainingMs))}ms`
    : '0';
  await beforeDeadline(
    runQuery(
      client,
      previous.check_interval === null
        ? "SELECT set_config('lock_timeout', $1, false)"
        : "SELECT set_config('lock_timeout', $1, false), set_config('client_connection_check_interval', '1000', false)",
      [lockTimeout],
    ),
  );
  try {
    await beforeDeadline(runQuery(client, 'SELECT pg_advisory_lock($1::bigint)', [id]));
  } catch (error) {
    if (error instanceof DatabaseError && error.sqlState === '55P03') return false;
    throw error;
  }
  await beforeDeadline(
    runQuery(
      client,
      previous.check_interval === null
        ? "SELECT set_config('lock_timeout', $1, false)"
        : "SELECT set_config('lock_timeout', $1, false), set_config('client_connection_check_interval', $2, false)",
      previous.check_interval === null
        ? [previous.lock_timeout]
        : [previous.lock_timeout, previous.check_interval],
    ),
  );
  return true;
}
