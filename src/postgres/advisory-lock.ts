import { AbortedError, InvalidArgumentError, messageOf } from '../core/errors.js';
import { createLazyAbort, isAborted } from '../core/abort.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockLostError,
  LockNotOwnerError,
  type AcquireOptions,
  type LockHandle,
  type Locker,
  tryOnce,
} from '../core/lock.js';
import { assertAbortSignal, assertPlainObject } from '../core/validate.js';
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
  readonly pool: PoolLike;
  /**
   * Sequence that mints fencing tokens (created by `createLockTable`).
   * @default 'raceguard_locks_tokens'
   */
  readonly tokenSequence?: string;
}

/**
 * Session-level PostgreSQL advisory locks behind the common lock API: a
 * held lock is a connection checked out of the pool holding
 * `pg_advisory_lock(key)`. Waiters queue in PostgreSQL's lock manager, in
 * arrival order, and are woken by it (no polling). Tokens come from a
 * sequence right after the grant. A connection that dies frees its locks:
 * the handle's `signal` aborts. `ttlMs` and `autoExtend` do not apply.
 *
 * Session locks need a session: they do not work through a pooler in
 * transaction mode (PgBouncer `pool_mode=transaction`); use
 * {@link PostgresLeaseLock} there.
 *
 * @example
 * ```ts
 * await createLockTable(pool); // for the token sequence
 * const locks = new PostgresAdvisoryLock({ pool });
 * await withLock(locks, 'nightly-report', () => buildReport(), { waitMs: 0 });
 * ```
 */
export class PostgresAdvisoryLock implements Locker {
  readonly #pool: PoolLike;
  readonly #nextToken: string;

  constructor(options: PostgresAdvisoryLockOptions) {
    assertPlainObject('options', options);
    if (typeof options.pool?.connect !== 'function') {
      throw new InvalidArgumentError('options.pool', 'a pg Pool', options.pool);
    }
    this.#pool = options.pool;
    const sequence = quoteIdentifier(
      options.tokenSequence ?? 'raceguard_locks_tokens',
      'options.tokenSequence',
    );
    this.#nextToken = `SELECT nextval('${sequence.replaceAll("'", "''")}') AS token`;
  }

  /**
   * Wait (up to `waitMs`) in PostgreSQL's queue for the lock on `key`.
   *
   * @example
   * ```ts
   * await using lock = await locks.acquire('rebuild-index', { waitMs: 5000 });
   * ```
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    const id = advisoryLockKey(key).toString();
    assertPlainObject('options', options);
    const { waitMs = Number.POSITIVE_INFINITY, signal } = options;
    if (!(typeof waitMs === 'number' && waitMs >= 0)) {
      throw new InvalidArgumentError('options.waitMs', 'a number of ms >= 0 (or Infinity)', waitMs);
    }
    assertAbortSignal('options.signal', signal);
    if (signal?.aborted === true) throw new AbortedError(signal.reason);

    let client: EventedClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw new LockBackendError(`PostgreSQL failed to connect: ${messageOf(error)}`, error);
    }
    let granted = false;
    let broken: Error | undefined;
    const started = performance.now();
    const onAbort = (): void => {
      // Cancel the blocked pg_advisory_lock from another connection.
      void runQuery(this.#pool, 'SELECT pg_cancel_backend($1)', [pid]).catch(() => undefined);
    };
    let pid: unknown;
    try {
      if (waitMs === 0) {
        const { rows } = await runQuery(
          client,
          'SELECT pg_try_advisory_lock($1::bigint) AS locked',
          [id],
        );
        if (rows[0]?.locked !== true)
          throw new LockAcquireTimeoutError(key, 0, 'held by another session');
      } else {
        pid = (await runQuery(client, 'SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
        const timeout = Number.isFinite(waitMs) ? `${Math.max(1, Math.ceil(waitMs))}ms` : '0';
        await runQuery(client, "SELECT set_config('lock_timeout', $1, false)", [timeout]);
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          await runQuery(client, 'SELECT pg_advisory_lock($1::bigint)', [id]);
        } catch (error) {
          if (error instanceof DatabaseError && error.sqlState === '55P03') {
            throw new LockAcquireTimeoutError(
              key,
              performance.now() - started,
              'held by another session',
            );
          }
          if (error instanceof DatabaseError && error.sqlState === '57014' && isAborted(signal)) {
            throw new AbortedError(signal?.reason);
          }
          throw error;
        } finally {
          signal?.removeEventListener('abort', onAbort);
          await runQuery(client, "SELECT set_config('lock_timeout', '0', false)").catch(
            () => undefined,
          );
        }
      }
      const token = BigInt(String((await runQuery(client, this.#nextToken)).rows[0]?.token));
      if (isAborted(signal)) {
        await runQuery(client, 'SELECT pg_advisory_unlock($1::bigint)', [id]);
        throw new AbortedError(signal?.reason);
      }
      granted = true;
      return this.#handle(key, id, client, token, options);
    } catch (error) {
      if (!(error instanceof LockAcquireTimeoutError || error instanceof AbortedError)) {
        broken = error instanceof Error ? error : new Error(String(error));
        if (!(error instanceof LockBackendError)) {
          throw new LockBackendError(
            `PostgreSQL failed to acquire a lock: ${messageOf(error)}`,
            error,
          );
        }
      }
      throw error;
    } finally {
      // Destroying a failed connection also frees whatever it might hold.
      if (!granted) client.release(broken);
    }
  }

  /**
   * Take the lock on `key` if no other session holds it.
   *
   * @example
   * ```ts
   * const lock = await locks.tryAcquire('vacuum');
   * ```
   */
  tryAcquire(
    key: string,
    options: Omit<AcquireOptions, 'waitMs'> = {},
  ): Promise<LockHandle | undefined> {
    return tryOnce(() => this.acquire(key, { ...options, waitMs: 0 }));
  }

  #handle(
    key: string,
    id: string,
    client: EventedClient,
    token: bigint,
    options: AcquireOptions,
  ): LockHandle {
    const loss = createLazyAbort();
    let held = true;
    let released: Promise<void> | undefined;
    const onFailure = (): void => {
      if (!held) return;
      held = false;
      const lost = new LockLostError(key, 'backend');
      loss.abort(lost);
      try {
        options.onLost?.(lost);
      } catch {
        // Loss is reported, never thrown from an event handler.
      }
    };
    client.on?.('error', onFailure);
    client.on?.('end', onFailure);
    const release = (): Promise<void> =>
      (released ??= (async () => {
        const wasHeld = held;
        held = false;
        client.removeListener?.('error', onFailure);
        client.removeListener?.('end', onFailure);
        if (!wasHeld) return client.release(true);
        try {
          await runQuery(client, 'SELECT pg_advisory_unlock($1::bigint)', [id]);
          client.release();
        } catch (error) {
          // The session is unusable: destroying it frees its locks.
          client.release(error instanceof Error ? error : true);
        }
      })());
    return {
      key,
      token,
      validUntil: Number.POSITIVE_INFINITY,
      get signal() {
        return loss.signal;
      },
      extend: () =>
        held && released === undefined
          ? Promise.resolve()
          : Promise.reject(new LockNotOwnerError(key)),
      release,
      [Symbol.asyncDispose]: release,
    };
  }
}
