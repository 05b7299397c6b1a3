/**
 * Read-your-own-writes on PostgreSQL replicas. A write goes to the primary
 * and yields a session token: the cluster's system identifier and a WAL
 * position at or past the write's commit (`pg_current_wal_insert_lsn()`
 * after it). A read with the token goes to a replica only once its replay
 * position (`pg_last_wal_replay_lsn()`) has reached the token, waiting at
 * most `maxWaitMs`, and otherwise to the primary: the session always sees
 * its own writes, whatever the lag. This is the causal-session token of
 * Cosmos DB and MongoDB, on PostgreSQL's own positions; a fixed "primary
 * for 2 s after a write" only guesses the lag.
 */
import { publishReplica } from '../core/events.js';
import { pause, within } from '../core/deadline.js';
import { InvalidArgumentError, messageOf } from '../core/errors.js';
import {
  assertAbortSignal,
  assertKnownOptions,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { ConnectionError, DatabaseError, fromDriverError } from './errors.js';
import { runQuery } from './statements.js';
import type { PoolLike, QueryConfigLike, QueryResultLike, Queryable } from './types.js';

/** Options of {@link ReplicaRouter}. */
export interface ReplicaRouterOptions {
  /** The primary's pool: every write, and reads no replica can serve. */
  readonly primary: PoolLike;
  /** The replicas' pools (hot standbys streaming from the primary). */
  readonly replicas: readonly PoolLike[];
  /** How long a read with a token waits for a replica to catch up before using the primary. @default 50 */
  readonly maxWaitMs?: number;
  /** How often the replicas' replay positions and health are read in the background. @default 20 */
  readonly pollMs?: number;
  /**
   * Reads without a token skip a replica that has not replayed what the
   * primary had written this long ago (or is down). @default 5000
   */
  readonly maxStalenessMs?: number;
  /** Longest wait for one health or position query. @default 1000 */
  readonly checkTimeoutMs?: number;
  /**
   * Longest a read on a replica may take before it is run again on the
   * primary (a frozen replica or a partition would otherwise hold it with
   * no bound). Reads that legitimately take longer need a higher value.
   * @default 5000
   */
  readonly replicaTimeoutMs?: number;
}

/** Where a read was served. */
export type ReadSource = 'primary' | 'replica';

/** Options of one routed read or write. */
export interface RouteOptions {
  /** The session token of the caller's last write (from a cookie, a header, a session). */
  readonly token?: string | undefined;
  readonly signal?: AbortSignal;
}

const OPTIONS = new Set([
  'primary',
  'replicas',
  'maxWaitMs',
  'pollMs',
  'maxStalenessMs',
  'checkTimeoutMs',
  'replicaTimeoutMs',
]);
const TOKEN = /^v1\.([0-9]{1,20})\.([0-9A-F]{1,16})$/;

/** A WAL position (`'16/B374D848'`) as a number of bytes. */
function lsnOf(text: string): bigint {
  const [high, low] = text.split('/');
  return (BigInt(`0x${high ?? '0'}`) << 32n) | BigInt(`0x${low ?? '0'}`);
}

interface ReplicaState {
  readonly pool: PoolLike;
  /** Replayed up to here, as of the last check (replay only moves forward from there). */
  replayed: bigint;
  /** Healthy and still a standby of this primary. */
  usable: boolean;
  lastError: string | undefined;
  /** The check in flight, shared by every read that waits on this replica. */
  checking: Promise<void> | undefined;
}

/**
 * Routes reads to replicas that have caught up with the session's writes.
 *
 * @example
 * ```ts
 * const router = new ReplicaRouter({ primary, replicas: [replica] });
 * const { token } = await router.write((db) => db.query('UPDATE users SET name = $1 WHERE id = $2', [name, id]));
 * // ... the next request of the same user carries the token:
 * const { result } = await router.read((db) => db.query('SELECT name FROM users WHERE id = $1', [id]), { token });
 * ```
 */
export class ReplicaRouter implements AsyncDisposable {
  readonly #primary: PoolLike;
  readonly #replicas: ReplicaState[];
  readonly #maxWaitMs: number;
  readonly #replicaTimeoutMs: number;
  readonly #pollMs: number;
  readonly #maxStalenessMs: number;
  readonly #checkTimeoutMs: number;
  #systemId: string | undefined;
  #ready: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #next = 0;
  /** The primary's position, sampled: [time, position], oldest first. */
  readonly #primarySamples: [number, bigint][] = [];
  /** The highest position this router has seen on the primary (samples and its own writes). */
  #primaryLsn = 0n;

  constructor(options: ReplicaRouterOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTIONS);
    for (const [name, pool] of [['options.primary', options.primary] as const]) {
      if (typeof (pool as Partial<PoolLike> | undefined)?.query !== 'function') {
        throw new InvalidArgumentError(name, 'a pg Pool', pool);
      }
    }
    if (!Array.isArray(options.replicas)) {
      throw new InvalidArgumentError('options.replicas', 'an array of pg Pools', options.replicas);
    }
    options.replicas.forEach((pool, i) => {
      if (typeof (pool as Partial<PoolLike> | undefined)?.query !== 'function') {
        throw new InvalidArgumentError(`options.replicas[${i}]`, 'a pg Pool', pool);
      }
    });
    this.#primary = options.primary;
    this.#replicas = options.replicas.map((pool: PoolLike) => ({
      pool,
      replayed: 0n,
      usable: false,
      lastError: 'not checked yet',
      checking: undefined,
    }));
    this.#maxWaitMs = options.maxWaitMs ?? 50;
    assertPositiveInteger('options.maxWaitMs', this.#maxWaitMs);
    this.#replicaTimeoutMs = options.replicaTimeoutMs ?? 5000;
    assertPositiveInteger('options.replicaTimeoutMs', this.#replicaTimeoutMs);
    this.#pollMs = options.pollMs ?? 20;
    assertPositiveInteger('options.pollMs', this.#pollMs);
    this.#maxStalenessMs = options.maxStalenessMs ?? 5000;
    assertPositiveInteger('options.maxStalenessMs', this.#maxStalenessMs);
    this.#checkTimeoutMs = options.checkTimeoutMs ?? 1000;
    assertPositiveInteger('options.checkTimeoutMs', this.#checkTimeoutMs);
  }

  /** Each replica's state, for health endpoints and metrics. */
  get replicas(): readonly {
    readonly usable: boolean;
    readonly replayedLsn: bigint;
    readonly lastError: string | undefined;
  }[] {
    return this.#replicas.map((r) => ({
      usable: r.usable,
      replayedLsn: r.replayed,
      lastError: r.lastError,
    }));
  }

  /**
   * Run `work` on the primary (the pool itself: `transaction(db, ...)` works
   * in it); resolves its result and the session token to keep (the
   * caller's previous one if that was later).
   */
  async write<T>(
    work: (db: PoolLike) => Promise<T>,
    options: RouteOptions = {},
  ): Promise<{ readonly result: T; readonly token: string }> {
    this.#checkRoute(options);
    await this.#start();
    const result = await work(this.#primary);
    return { result, token: await this.#tokenAfterWrite(options.token) };
  }

  /**
   * Run `work` (reads only) on a replica that has replayed the session's
   * last write, or on the primary when none has within `maxWaitMs`. Without
   * a token (or with one that cannot be read, or from another cluster) any
   * replica within `maxStalenessMs` serves it; with a token that cannot be
   * read, the primary.
   */
  async read<T>(
    work: (db: Queryable) => Promise<T>,
    options: RouteOptions = {},
  ): Promise<{ readonly result: T; readonly source: ReadSource }> {
    this.#checkRoute(options);
    await this.#start();
    const replica = await this.#replicaFor(options);
    if (replica !== undefined) {
      try {
        const result = await within(work(replica.pool), {
          deadline: performance.now() + this.#replicaTimeoutMs,
          signal: options.signal,
          timeout: () => new ReplicaReadTimeout(),
        });
        publishReplica({ source: 'replica' });
        return { result, source: 'replica' };
      } catch (error) {
        // The primary serves a read the replica could not: one that went
        // away, froze, or cancelled it for a recovery conflict (40001 on a
        // standby). Anything else is the caller's.
        let fallback: 'replica-down' | 'replica-timeout' | 'recovery-conflict';
        if (error instanceof ReplicaReadTimeout) fallback = 'replica-timeout';
        else if (isRecoveryConflict(error)) fallback = 'recovery-conflict';
        else if (fromDriverError(error) instanceof ConnectionError) {
          fallback = 'replica-down';
          this.#markDown(replica, error);
        } else throw error;
        const result = await work(this.#primary);
        publishReplica({ source: 'primary', fallback });
        return { result, source: 'primary' };
      }
    }
    const result = await work(this.#primary);
    publishReplica({ source: 'primary' });
    return { result, source: 'primary' };
  }

  /**
   * A pool-like view for one session: `query` sends statements that only
   * read (`SELECT`/`WITH` without a data-modifying clause or a row lock) by
   * {@link read}, everything else by {@link write}, and keeps the session's
   * token in `session.token`.
   */
  session(token?: string): RoutedSession {
    return new RoutedSession(this, token);
  }

  /** Stop the background checks. The pools stay open: they are the caller's. */
  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #checkRoute(options: RouteOptions): void {
    assertPlainObject('options', options);
    assertAbortSignal('options.signal', options.signal);
    if (options.token !== undefined && typeof options.token !== 'string') {
      throw new InvalidArgumentError('options.token', 'a string', options.token);
    }
  }

  /** The token's position, or undefined when it is not this cluster's or cannot be read. */
  #positionOf(token: string | undefined): bigint | undefined {
    if (token === undefined) return undefined;
    const match = TOKEN.exec(token);
    if (match === null || match[1] !== this.#systemId) return undefined;
    return BigInt(`0x${match[2] as string}`);
  }

  async #tokenAfterWrite(previous: string | undefined): Promise<string> {
    const { rows } = await runQuery(
      this.#primary,
      'SELECT pg_current_wal_insert_lsn()::text AS lsn',
    );
    let position = lsnOf(String(rows[0]?.lsn));
    const before = this.#positionOf(previous);
    if (before !== undefined && before > position) position = before;
    if (position > this.#primaryLsn) this.#primaryLsn = position;
    return `v1.${this.#systemId as string}.${position.toString(16).toUpperCase()}`;
  }

  async #replicaFor(options: RouteOptions): Promise<ReplicaState | undefined> {
    if (this.#replicas.length === 0) return undefined;
    const malformed = options.token !== undefined && this.#positionOf(options.token) === undefined;
    if (malformed) return undefined; // forged, garbled or another cluster's: the primary is always right
    const needed = this.#positionOf(options.token);
    if (needed === undefined) return this.#pick((r) => this.#freshEnough(r));
    const caughtUp = this.#pick((r) => r.replayed >= needed);
    if (caughtUp !== undefined) return caughtUp;
    // Beyond anything the primary is known to have written: not worth a wait.
    // (A primary that does not answer in time: the read goes to it anyway, and says so there.)
    if (needed > this.#primaryLsn) await this.#samplePrimary().catch(() => undefined);
    if (needed > this.#primaryLsn) return undefined;
    const deadline = performance.now() + this.#maxWaitMs;
    while (performance.now() < deadline) {
      await pause(Math.min(2, Math.max(0, deadline - performance.now())), {
        ...(options.signal !== undefined && { signal: options.signal }),
      });
      // A check slower than the read's wait says nothing about the replica's health.
      await within(Promise.all(this.#replicas.filter((r) => r.usable).map((r) => this.#check(r))), {
        deadline,
        timeout: () => new Error('waited long enough'),
      }).catch(() => undefined);
      const ready = this.#pick((r) => r.replayed >= needed);
      if (ready !== undefined) return ready;
    }
    return undefined;
  }

  #pick(fits: (replica: ReplicaState) => boolean): ReplicaState | undefined {
    for (let i = 0; i < this.#replicas.length; i++) {
      const replica = this.#replicas[(this.#next + i) % this.#replicas.length] as ReplicaState;
      if (replica.usable && fits(replica)) {
        this.#next = (this.#next + i + 1) % this.#replicas.length;
        return replica;
      }
    }
    return undefined;
  }

  /** Whether `replica` has replayed what the primary had written `maxStalenessMs` ago. */
  #freshEnough(replica: ReplicaState): boolean {
    const horizon = performance.now() - this.#maxStalenessMs;
    let required = 0n;
    for (const [at, position] of this.#primarySamples) {
      if (at > horizon) break;
      required = position;
    }
    return replica.replayed >= required;
  }

  #start(): Promise<void> {
    this.#ready ??= (async () => {
      const { rows } = await within(
        runQuery(this.#primary, 'SELECT system_identifier::text AS id FROM pg_control_system()'),
        {
          deadline: performance.now() + this.#checkTimeoutMs,
          timeout: () => new ConnectionError(new Error('the primary did not answer')),
        },
      );
      this.#systemId = String(rows[0]?.id);
      await this.#samplePrimary();
      await Promise.all(this.#replicas.map((r) => this.#check(r)));
      this.#schedule();
    })().catch((error: unknown) => {
      this.#ready = undefined; // the next call tries again
      throw error;
    });
    return this.#ready;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      void (async () => {
        await this.#samplePrimary().catch(() => undefined);
        await Promise.all(this.#replicas.map((r) => this.#check(r)));
        this.#schedule();
      })();
    }, this.#pollMs);
    this.#timer.unref();
  }

  async #samplePrimary(): Promise<void> {
    const { rows } = await within(
      runQuery(this.#primary, 'SELECT pg_current_wal_insert_lsn()::text AS lsn'),
      {
        deadline: performance.now() + this.#checkTimeoutMs,
        timeout: () => new Error('the primary did not answer'),
      },
    );
    const position = lsnOf(String(rows[0]?.lsn));
    if (position > this.#primaryLsn) this.#primaryLsn = position;
    const now = performance.now();
    this.#primarySamples.push([now, position]);
    // Keep what the staleness horizon needs, and one sample older than it.
    while (
      this.#primarySamples.length > 2 &&
      (this.#primarySamples[1] as [number, bigint])[0] < now - this.#maxStalenessMs
    ) {
      this.#primarySamples.shift();
    }
  }

  /** Read `replica`'s replay position and whether it still is this primary's standby. */
  #check(replica: ReplicaState): Promise<void> {
    replica.checking ??= this.#checkNow(replica).finally(() => {
      replica.checking = undefined;
    });
    return replica.checking;
  }

  async #checkNow(replica: ReplicaState): Promise<void> {
    const deadline = performance.now() + this.#checkTimeoutMs;
    try {
      const { rows } = await within(
        runQuery(
          replica.pool,
          `SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn,
                  (SELECT system_identifier::text FROM pg_control_system()) AS id`,
        ),
        { deadline, timeout: () => new Error('no answer within the check timeout') },
      );
      const row = rows[0] as { standby?: unknown; lsn?: string | null; id?: string } | undefined;
      if (row?.standby !== true || typeof row.lsn !== 'string' || row.id !== this.#systemId) {
        replica.usable = false;
        replica.lastError =
          row?.standby === true ? 'a standby of another cluster' : 'not a standby (promoted?)';
        return;
      }
      // The server's word, even lower than before: a standby restored from an
      // older backup at the same address has gone back, and must be judged so.
      replica.replayed = lsnOf(row.lsn);
      replica.usable = true;
      replica.lastError = undefined;
    } catch (error) {
      this.#markDown(replica, error);
    }
  }

  #markDown(replica: ReplicaState, error: unknown): void {
    replica.usable = false;
    replica.lastError = messageOf(error);
  }
}

const WRITES =
  /\b(INSERT|UPDATE|DELETE|MERGE|CREATE|ALTER|DROP|TRUNCATE|GRANT|REVOKE|COPY|CALL|DO|LOCK|NOTIFY|LISTEN|SET|RESET|BEGIN|START|COMMIT|ROLLBACK|PREPARE|EXECUTE|VACUUM|ANALYZE|REFRESH|CLUSTER|REINDEX|SECURITY|SAVEPOINT|RELEASE|nextval|setval)\b|\bFOR\s+(UPDATE|SHARE|NO\s+KEY|KEY\s+SHARE)\b/i;

/**
 * Whether a statement only reads: `SELECT`/`WITH`/`VALUES`/`TABLE`/`SHOW`
 * without a writing word or a row lock. Errs towards "writes" (the primary
 * is always right).
 *
 * @example
 * ```ts
 * isReadOnlyStatement('SELECT name FROM users WHERE id = $1'); // true
 * isReadOnlyStatement('SELECT * FROM jobs FOR UPDATE SKIP LOCKED'); // false
 * ```
 */
export function isReadOnlyStatement(text: string): boolean {
  if (typeof text !== 'string') throw new InvalidArgumentError('text', 'an SQL string', text);
  const body = text.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ').trim();
  if (!/^(SELECT|WITH|VALUES|TABLE|SHOW)\b/i.test(body)) return false;
  // Quoted literals and identifiers cannot write: leave them out of the scan.
  const unquoted = body.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"/g, ' ');
  return !WRITES.test(unquoted);
}

/**
 * One session's pool-like view of a {@link ReplicaRouter} (see
 * {@link ReplicaRouter.session}).
 */
export class RoutedSession implements Queryable {
  readonly #router: ReplicaRouter;
  /** The token of this session's last write: send it back to the client. */
  token: string | undefined;

  constructor(router: ReplicaRouter, token: string | undefined) {
    this.#router = router;
    this.token = token;
  }

  query(text: string, values?: unknown[]): Promise<QueryResultLike>;
  query(config: QueryConfigLike): Promise<QueryResultLike>;
  async query(
    textOrConfig: string | QueryConfigLike,
    values?: unknown[],
  ): Promise<QueryResultLike> {
    const config: QueryConfigLike =
      typeof textOrConfig === 'string'
        ? { text: textOrConfig, ...(values !== undefined && { values }) }
        : textOrConfig;
    if (typeof config?.text !== 'string') {
      throw new InvalidArgumentError('text', 'an SQL string', textOrConfig);
    }
    if (isReadOnlyStatement(config.text)) {
      try {
        const { result, source } = await this.#router.read((db) => db.query(config), {
          token: this.token,
        });
        // On the primary a SELECT may call a function that writes, and
        // nothing refuses it: the token moves past whatever it did, or the
        // next read could go to a replica that has not replayed it.
        if (source === 'primary') {
          const { token } = await this.#router.write(() => Promise.resolve(), {
            token: this.token,
          });
          this.token = token;
        }
        return result;
      } catch (error) {
        // A function that writes, called by a SELECT: the replica refuses (25006); the primary runs it.
        if (
          !(error instanceof DatabaseError && error.sqlState === '25006') &&
          !isReadOnlyRefusal(error)
        ) {
          throw error;
        }
      }
    }
    const { result, token } = await this.#router.write((db) => db.query(config), {
      token: this.token,
    });
    this.token = token;
    return result;
  }
}

/** A replica's read timed out: run it on the primary. */
class ReplicaReadTimeout extends Error {}

/** A standby cancelled the query because replay needed what it read (40001 there). */
function isRecoveryConflict(error: unknown): boolean {
  const translated = fromDriverError(error);
  return translated instanceof DatabaseError && translated.sqlState === '40001';
}

function isReadOnlyRefusal(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '25006';
}
