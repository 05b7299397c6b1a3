import { pause } from '../core/deadline.js';
import { InvalidArgumentError, messageOf } from '../core/errors.js';
import { LeaseLocker, leaseSettings, type LeaseRoundTrips } from '../core/lease-acquire.js';
import { LockBackendError, checkOptionNames } from '../core/lock.js';
import { assertPlainObject, assertPositiveInteger } from '../core/validate.js';
import { quoteIdentifier } from './identifiers.js';
import {
  assertListener,
  ReleaseNotifications,
  type PgListenerLike,
} from './release-notifications.js';
import { createOnce } from './ddl.js';
import { assertQueryable, runQuery } from './statements.js';
import type { Queryable, QueryResultLike } from './types.js';

/** Options of {@link createLockTables} and {@link PostgresLeaseLock}. */
export interface LockTableOptions {
  /**
   * Table of lock grants (created by {@link createLockTables}).
   * @default 'raceguard_locks'
   */
  readonly table?: string;
}

/**
 * Create, if missing, what both PostgreSQL lockers use: the lease table of
 * {@link PostgresLeaseLock} (`table`) and its token sequence
 * (`<table>_tokens`), from which `PostgresAdvisoryLock` mints its fencing
 * tokens too. Idempotent and safe to call from several instances at once:
 * run it from a migration or at start-up.
 *
 * @example
 * ```ts
 * await createLockTables(pool);
 * ```
 */
export async function createLockTables(
  db: Queryable,
  options: LockTableOptions = {},
): Promise<void> {
  assertQueryable('db', db);
  const table = options.table ?? 'raceguard_locks';
  const t = quoteIdentifier(table, 'options.table');
  const seq = quoteIdentifier(`${table}_tokens`, 'options.table');
  await createOnce(db, `raceguard:ddl:${table}`, [
    `CREATE TABLE IF NOT EXISTS ${t} (key text PRIMARY KEY, owner text NOT NULL, token bigint NOT NULL, expires_at timestamptz NOT NULL)`,
    `CREATE SEQUENCE IF NOT EXISTS ${seq}`,
  ]);
}

/** How long a key must have been free before {@link PostgresLeaseLock.reap} deletes its row, by default: one hour. */
export const DEFAULT_REAP_AFTER_MS = 3_600_000;

/** Options of {@link PostgresLeaseLock}. */
export interface PostgresLeaseLockOptions extends LockTableOptions {
  /** A pool (or anything queryable); every operation is one autocommit statement. */
  readonly client: Queryable;
  /**
   * Prepended to every key in the table, so several applications can share
   * one lock table without sharing locks.
   * @default ''
   */
  readonly prefix?: string;
  /** Default lease; at least `MIN_LEASE_MS` (100). @default 30000 */
  readonly ttlMs?: number;
  /**
   * Longest pause between attempts while waiting (with a `listener`, the
   * fallback when a release notification is missed or the listener is
   * down).
   * @default 50
   */
  readonly pollMs?: number;
  /**
   * A dedicated, connected `pg.Client` on which waiters `LISTEN` for
   * releases, so a waiter takes a released key at once instead of at its
   * next poll (each release wakes one waiter of this instance, the one
   * waiting longest). Not a pooled connection, and not through a
   * transaction-pooling proxy (where `LISTEN` does not work); the lock's
   * own statements still go through `client`. With it, this instance's
   * releases `NOTIFY` (at commit PostgreSQL serialises transactions that
   * notify, a cost at thousands of releases per second); give it to every
   * process that releases, or their releases wake nobody and waiters fall
   * back to polling. Waiting on a key freed by expiry (a crashed holder)
   * ends when its lease does, as without a listener. With wake-ups coming
   * by notification, a larger `pollMs` (such as 1000) cuts the polling load.
   */
  readonly listener?: PgListenerLike;
  /** Share of the lease subtracted for clock drift. @default 0.01 */
  readonly driftFactor?: number;
}

/**
 * A lease lock kept in a PostgreSQL table: a grant is one row (key, owner,
 * token, expiry), taken or renewed in a single statement with the expiry
 * computed by the server's clock, and the fencing token drawn from a
 * sequence in that same statement, so tokens are totally ordered across
 * every key and every process. A holder that crashes frees its key when the
 * lease runs out. A released key keeps its (small) row until
 * {@link PostgresLeaseLock.reap} removes it. Every operation is one autocommit statement with no
 * session state, so it works through transaction-pooling proxies such as
 * PgBouncer. Waiters poll (every `pollMs`), in no particular order, and
 * are woken by `LISTEN`/`NOTIFY` when given a `listener` connection.
 *
 * Pair it with `fencedUpdate` in the same database for writes that a paused
 * holder must never make late.
 *
 * @example
 * ```ts
 * await createLockTables(pool);
 * const locks = new PostgresLeaseLock({ client: pool });
 * await withLock(locks, `invoice:${id}`, (lock) =>
 *   fencedUpdate(pool, { table: 'invoices', key: { id }, set: { status: 'sent' }, token: lock.token }),
 * );
 * ```
 */
export class PostgresLeaseLock extends LeaseLocker {
  readonly #db: Queryable;
  readonly #prefix: string;
  readonly #notifications: ReleaseNotifications | undefined;
  readonly #channel: string;
  readonly #tableName: string;
  readonly #sql: {
    acquire: string;
    remaining: string;
    extend: string;
    release: string;
    reap: string;
  };

  constructor(options: PostgresLeaseLockOptions) {
    assertPlainObject('options', options);
    checkOptionNames(
      'PostgresLeaseLock',
      options,
      ['client', 'prefix', 'table', 'ttlMs', 'pollMs', 'listener', 'driftFactor'],
      { db: 'calls it client (db was its name before 0.1)' },
    );
    super(
      leaseSettings('PostgresLeaseLock', options, {
        pollMs: 50,
        silent: 'PostgreSQL did not answer in time',
      }),
    );
    assertQueryable('options.client', options.client);
    this.#db = options.client;
    this.#prefix = options.prefix ?? '';
    if (typeof this.#prefix !== 'string')
      throw new InvalidArgumentError('options.prefix', 'a string', this.#prefix);
    const name = options.table ?? 'raceguard_locks';
    this.#tableName = name;
    this.#channel = ReleaseNotifications.channelOf(name);
    if (options.listener !== undefined) {
      assertListener('options.listener', options.listener);
      this.#notifications = new ReleaseNotifications(options.listener, this.#channel);
    }
    const t = quoteIdentifier(name, 'options.table');
    const seq = quoteIdentifier(`${name}_tokens`, 'options.table');
    const leaseEnds = "clock_timestamp() + $3 * interval '1 millisecond'";
    const nextToken = `nextval('${seq.replaceAll("'", "''")}')`;
    this.#sql = {
      // Take the key if it is free or its lease has run out. A key's row is
      // never deleted on release (only by reap(), long after), so every grant
      // but a key's first goes through DO UPDATE, which draws its token while
      // holding the row lock: after the previous grant committed. A token
      // drawn in VALUES is used only when no row exists at all; had the row
      // been deleted on release, a statement that drew its token before a
      // grant and inserted after that grant's release would hand out a
      // smaller token than the grant before it.
      acquire:
        `INSERT INTO ${t} AS l (key, owner, token, expires_at) VALUES ($1, $2, ${nextToken}, ${leaseEnds}) ` +
        `ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, token = ${nextToken}, expires_at = EXCLUDED.expires_at ` +
        `WHERE l.expires_at <= clock_timestamp() RETURNING token`,
      remaining: `SELECT greatest(0, extract(epoch FROM expires_at - clock_timestamp()) * 1000)::int AS ms FROM ${t} WHERE key = $1`,
      extend: `UPDATE ${t} SET expires_at = ${leaseEnds} WHERE key = $1 AND owner = $2 AND expires_at > clock_timestamp() RETURNING token`,
      // Free the key, keeping its row (see acquire); with a listener, say so
      // on the table's channel ($3), naming the key by digest ($4).
      release:
        this.#notifications === undefined
          ? `UPDATE ${t} SET expires_at = clock_timestamp() WHERE key = $1 AND owner = $2 AND expires_at > clock_timestamp()`
          : `WITH freed AS (UPDATE ${t} SET expires_at = clock_timestamp() WHERE key = $1 AND owner = $2 AND expires_at > clock_timestamp() RETURNING key) ` +
            `SELECT pg_notify($3, $4) FROM freed`,
      reap: `DELETE FROM ${t} WHERE expires_at < clock_timestamp() - $1 * interval '1 millisecond'`,
    };
  }

  async #release(key: string, owner: string): Promise<void> {
    const values: unknown[] = [key, owner];
    if (this.#notifications !== undefined)
      values.push(this.#channel, ReleaseNotifications.payloadOf(key));
    await this.#query(this.#sql.release, values, 'release a lock');
  }

  async #query(text: string, values: unknown[], what: string): Promise<QueryResultLike> {
    try {
      return await runQuery(this.#db, text, values);
    } catch (error) {
      // The table was never created: say which, and what creates it.
      const failure = error as { code?: unknown; sqlState?: unknown } | null;
      if (failure?.sqlState === '42P01' || failure?.code === '42P01') {
        throw new LockBackendError(
          `PostgreSQL failed to ${what}: the lock table ${JSON.stringify(this.#tableName)} (or its token sequence) does not exist; create it once, e.g. in a migration, with createLockTables(pool${this.#tableName === 'raceguard_locks' ? '' : `, { table: ${JSON.stringify(this.#tableName)} }`})`,
          error,
        );
      }
      throw new LockBackendError(`PostgreSQL failed to ${what}: ${messageOf(error)}`, error);
    }
  }

  /** The round trips on `key`: one statement each; waits poll the lease, woken by `NOTIFY` with a listener. */
  protected roundTrips(key: string): LeaseRoundTrips {
    const stored = this.#prefix + key;
    const notifications = this.#notifications;
    // The key as release notifications name it, hashed once per acquire.
    const payload = notifications && ReleaseNotifications.payloadOf(stored);
    let listening = false;
    // Whether a release woke this waiter since its last attempt: if it gives up, it passes the release on.
    let woken = false;
    return {
      tryGrant: async (owner, ttlMs) => {
        const { rows } = await this.#query(
          this.#sql.acquire,
          [stored, owner, ttlMs],
          'acquire a lock',
        );
        // The attempt used up any wake-up.
        woken = false;
        const granted = rows[0];
        return granted === undefined ? {} : { token: BigInt(String(granted.token)) };
      },
      renew: async (owner, leaseMs) => {
        const { rows } = await this.#query(
          this.#sql.extend,
          [stored, owner, leaseMs],
          'extend a lock',
        );
        return rows.length === 1;
      },
      release: (owner) => this.#release(stored, owner),
      waitForRelease: async (wait) => {
        // LISTEN, then watch, then read the lease: a release the read missed
        // notifies us; one before it shows as a lease already over.
        if (notifications !== undefined && !listening)
          listening = await wait.beforeDeadline(notifications.listen());
        const watch =
          listening && payload !== undefined ? notifications?.watch(payload) : undefined;
        try {
          const { rows } = await wait.beforeDeadline(
            this.#query(this.#sql.remaining, [stored], 'read a lease'),
          );
          const ms = wait.pauseMs(Number(rows[0]?.ms ?? 0));
          await (watch === undefined
            ? pause(ms, { signal: wait.signal })
            : watch.sleep(ms, wait.signal));
        } finally {
          watch?.stop();
          woken = watch?.woken === true;
        }
      },
      end: (failed) => {
        // A release that woke this waiter goes to the next one.
        if (failed && woken && payload !== undefined) notifications?.passOn(payload);
      },
    };
  }

  /**
   * Delete the rows of keys that have been free (released or expired) for
   * at least `olderThanMs`, and return how many went. Released keys keep
   * their row so that fencing tokens stay in grant order (see the class
   * notes); run this from a periodic job to bound the table to the keys in
   * recent use. A key reaped while a grant statement is in flight is safe
   * as long as `olderThanMs` is far longer than a statement takes.
   *
   * @example
   * ```ts
   * setInterval(() => void locks.reap().catch(console.error), 600_000).unref();
   * ```
   */
  async reap(options: { readonly olderThanMs?: number } = {}): Promise<number> {
    assertPlainObject('options', options);
    const olderThanMs = options.olderThanMs ?? DEFAULT_REAP_AFTER_MS;
    assertPositiveInteger('options.olderThanMs', olderThanMs);
    const { rowCount } = await this.#query(this.#sql.reap, [olderThanMs], 'reap free locks');
    return rowCount ?? 0;
  }
}
