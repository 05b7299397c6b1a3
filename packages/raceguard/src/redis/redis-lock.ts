import { InvalidArgumentError, messageOf } from '../core/errors.js';
import {
  LeaseLocker,
  leaseSettings,
  type LeaseAttempt,
  type LeaseRoundTrips,
  type ReleaseWait,
} from '../core/lease-acquire.js';
import { LockBackendError, checkOptionNames } from '../core/lock.js';
import { assertPlainObject } from '../core/validate.js';
import {
  ACQUIRE,
  EXTEND,
  RELEASE,
  checkFenceCounter,
  fenceKey,
  type FenceCounter,
} from './lock-scripts.js';
import { ReleaseSubscriptions, waitForReleaseOn } from './release-subscriptions.js';
import type { LuaScript } from './script.js';
import type { RedisClientLike, RedisSubscriberLike } from './types.js';

/** Options of {@link RedisLock}. */
export interface RedisLockOptions {
  /** The connection that runs the scripts. */
  readonly client: RedisClientLike;
  /**
   * A second connection for pub/sub, to wake waiters the moment a lock is
   * released (ioredis: `client.duplicate()`). Without it waiters poll.
   */
  readonly subscriber?: RedisSubscriberLike;
  /**
   * Prefix of every key raceguard writes.
   * @default 'raceguard:'
   */
  readonly prefix?: string;
  /**
   * Default lease when `acquire` is given no `ttlMs`; at least
   * `MIN_LEASE_MS` (100).
   * @default 30000
   */
  readonly ttlMs?: number;
  /**
   * Longest sleep between attempts while waiting (also the fallback when a
   * release notification is missed).
   * @default 100
   */
  readonly pollMs?: number;
  /**
   * Share of the lease subtracted from its validity for clock drift between
   * this process and the server (Redlock's drift factor).
   * @default 0.01
   */
  readonly driftFactor?: number;
  /**
   * Where fencing tokens are counted.
   *
   * - `'per-key'`: one counter per lock name (`{prefix}fence:{name}`), in the
   *   name's Redis Cluster slot. Counters are never deleted, since a deleted
   *   counter would restart below tokens a resource has already stored, and
   *   the resource would then refuse every new holder: a lock per order id
   *   leaves one small key (about 90 bytes) per order ever locked.
   * - `'shared'`: one counter (`{prefix}fence`) for every name. Tokens still
   *   increase with every grant of each name (they increase across all
   *   names), and Redis keeps one key however many names are locked. Not for
   *   Redis Cluster, where the grant would touch two slots.
   *
   * Choose once per prefix: the two count apart, so switching can hand out
   * tokens below ones already used (raise the new counter past the old
   * ones with `SET` first if you must switch).
   * @default 'per-key'
   */
  readonly fenceCounter?: FenceCounter;
}

/**
 * A lock on one Redis server: `SET NX PX` with an `INCR`-minted fencing
 * token in one Lua script, compare-and-delete release, owner-checked
 * extension, lease expiry kept by the server's clock. Waiters are woken by a
 * pub/sub notification on release and poll only as a fallback; Redis offers
 * no FIFO, so waiters are served in no particular order.
 *
 * The fencing counter lives in Redis too: it survives restarts only if the
 * server persists data. A Redis lock is a lease, not a consensus lock: a
 * holder paused past its lease (GC, SIGSTOP, a slow disk) keeps running
 * while someone else holds the lock, so a correctness-critical resource must
 * check the token ({@link fencedSet}, `fencedUpdate` in `raceguard/postgres`).
 *
 * @example
 * ```ts
 * import Redis from 'ioredis';
 * const redis = new Redis();
 * const locks = new RedisLock({ client: redis, subscriber: redis.duplicate() });
 * await withLock(locks, `invoice:${id}`, async (lock) => {
 *   await fencedUpdate(pool, { table: 'invoices', key: { id }, set: { status: 'sent' }, token: lock.token });
 * }, { ttlMs: 10_000, autoExtend: true });
 * ```
 */
export class RedisLock extends LeaseLocker {
  readonly #client: RedisClientLike;
  readonly #prefix: string;
  readonly #fenceCounter: FenceCounter;
  readonly #subscriptions: ReleaseSubscriptions | undefined;

  constructor(options: RedisLockOptions) {
    assertPlainObject('options', options);
    checkOptionNames('RedisLock', options, [
      'client',
      'subscriber',
      'prefix',
      'ttlMs',
      'pollMs',
      'driftFactor',
      'fenceCounter',
    ]);
    if (
      typeof options.client?.evalsha !== 'function' ||
      typeof options.client.eval !== 'function'
    ) {
      throw new InvalidArgumentError(
        'options.client',
        'a Redis client with eval and evalsha (ioredis)',
        options.client,
      );
    }
    super(
      leaseSettings('RedisLock', options, { pollMs: 100, silent: 'Redis did not answer in time' }),
    );
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'raceguard:';
    this.#fenceCounter = checkFenceCounter(options.fenceCounter);
    this.#subscriptions =
      options.subscriber === undefined ? undefined : new ReleaseSubscriptions(options.subscriber);
  }

  /**
   * One script round trip, its reply mapped by `answer`: a single promise
   * layer of ours over the driver's reply on success (a grant and a release
   * are the hot path); on failure the `NOSCRIPT` fallback, and any error as a
   * LockBackendError. Bound once per locker: every acquire's round trips
   * share it.
   */
  readonly #run: ScriptRunner = (script, keys, args, what, answer) =>
    script
      .send(this.#client, keys, args)
      .then(answer, (error: unknown) =>
        this.#recover(script, keys, args, error, what).then(answer),
      );

  async #recover(
    script: LuaScript,
    keys: string[],
    args: (string | number)[],
    error: unknown,
    what: string,
  ): Promise<unknown> {
    try {
      return await script.recover(this.#client, keys, args, error);
    } catch (cause) {
      throw new LockBackendError(`Redis failed to ${what}: ${messageOf(cause)}`, cause);
    }
  }

  /** The round trips on `key`: one script each; waits end on a release message. */
  protected roundTrips(key: string): LeaseRoundTrips {
    return new RedisKeyTrips(this.#run, this.#prefix, key, this.#fenceCounter, this.#subscriptions);
  }
}

/** How a key's round trips run a script: {@link RedisLock}'s `#run`. */
type ScriptRunner = <T>(
  script: LuaScript,
  keys: string[],
  args: (string | number)[],
  what: string,
  answer: (reply: unknown) => T,
) => Promise<T>;

/** The grant script's reply: `[1, token]` when granted, `[0, remaining lease ms]` when held. */
function grantOf(reply: unknown): LeaseAttempt {
  const [granted, value] = reply as [number, number];
  return granted === 1 ? { token: BigInt(value) } : { leaseLeftMs: value > 0 ? value : undefined };
}

const isOne = (reply: unknown): boolean => reply === 1;
const nothing = (): undefined => undefined;

/**
 * The round trips of one acquire on one key: one object, no closure per
 * acquire or per call (an uncontended acquire and its release are the hot
 * path); the wait for a release message is built only if the key is held.
 */
class RedisKeyTrips implements LeaseRoundTrips {
  readonly #send: ScriptRunner;
  readonly #grantKeys: string[];
  readonly #lockKeys: string[];
  readonly #channel: string;
  readonly #subscriptions: ReleaseSubscriptions | undefined;
  #wait: ReturnType<typeof waitForReleaseOn> | undefined;

  constructor(
    send: ScriptRunner,
    prefix: string,
    key: string,
    fenceCounter: FenceCounter,
    subscriptions: ReleaseSubscriptions | undefined,
  ) {
    // One hash tag, so the lock and its counter live in the same cluster slot.
    const lock = `${prefix}lock:{${key}}`;
    this.#send = send;
    this.#grantKeys = [lock, fenceKey(prefix, key, fenceCounter)];
    this.#lockKeys = [lock];
    this.#channel = `${prefix}released:{${key}}`;
    this.#subscriptions = subscriptions;
  }

  tryGrant(owner: string, ttlMs: number): Promise<LeaseAttempt> {
    return this.#send(ACQUIRE, this.#grantKeys, [owner, ttlMs], 'acquire a lock', grantOf);
  }

  renew(owner: string, leaseMs: number): Promise<boolean> {
    return this.#send(EXTEND, this.#lockKeys, [owner, leaseMs], 'extend a lock', isOne);
  }

  release(owner: string): Promise<void> {
    return this.#send(RELEASE, this.#lockKeys, [owner, this.#channel], 'release a lock', nothing);
  }

  waitForRelease(wait: ReleaseWait): Promise<void> {
    this.#wait ??= waitForReleaseOn(
      this.#subscriptions === undefined ? [] : [this.#subscriptions],
      this.#channel,
    );
    return this.#wait.waitForRelease(wait);
  }

  end(failed: boolean): void {
    this.#wait?.end(failed);
  }
}
