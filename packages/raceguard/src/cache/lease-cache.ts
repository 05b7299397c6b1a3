/**
 * A read-through cache on Redis that never keeps a stale value: fills carry
 * a lease ("Scaling Memcache at Facebook", NSDI 2013, §3.2.1). A miss hands
 * one caller per key, across all processes, a token; an invalidation voids
 * it; a fill whose token was voided is refused. So a reader that loaded the
 * old row before a writer's invalidation can never write it back.
 */
import { cacheEventsWanted, publishCache } from '../core/events.js';
import { randomBytes } from 'node:crypto';
import { pause, within } from '../core/deadline.js';
import { InvalidArgumentError, RaceguardError, messageOf, rejection } from '../core/errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertKnownOptions,
  assertNonEmptyString,
  assertNonNegativeInteger,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import {
  ReleaseSubscriptions,
  type LuaScript,
  type RedisClientLike,
  type RedisSubscriberLike,
} from '../redis/shared.js';
import { LocalTier, type TierState } from './local-tier.js';
import {
  FILL,
  FAIL,
  GET_OR_LEASE,
  INVALIDATE,
  INVALIDATE_TAG,
  PLAIN_GET,
  PUBLISH,
  RELEASE,
  WRITE,
  identityOf,
  nameOf,
} from './scripts.js';

/** A Redis call of the cache failed; the cause is attached. */
export class CacheBackendError extends RaceguardError {
  constructor(message: string, cause: unknown) {
    super('RACEGUARD_CACHE_BACKEND', message, { cause });
  }
}

/**
 * The fill a caller waited behind failed: its loader's error, from another
 * process (from this one, callers get the loader's error itself).
 */
export class CacheLoadError extends RaceguardError {
  readonly key: string;
  constructor(key: string, message: string) {
    super(
      'RACEGUARD_CACHE_LOAD_FAILED',
      `cache key ${JSON.stringify(key)}: the fill this caller waited for failed: ${message}`,
    );
    this.key = key;
  }
}

/** A caller waited `waitMs` for another caller's fill of the key, in vain. */
export class CacheWaitTimeoutError extends RaceguardError {
  readonly key: string;
  constructor(key: string, waitedMs: number) {
    super(
      'RACEGUARD_CACHE_WAIT_TIMEOUT',
      `cache key ${JSON.stringify(key)}: another caller's fill did not land within ${Math.round(waitedMs)} ms`,
    );
    this.key = key;
  }
}

/** What the cache reports, for metrics. */
export type CacheEvent =
  | { readonly type: 'hit'; readonly key: string; readonly tier: 'local' | 'redis' }
  | { readonly type: 'miss' | 'stale-hit'; readonly key: string }
  | { readonly type: 'fill'; readonly key: string; readonly loadMs: number }
  | { readonly type: 'fill-refused'; readonly key: string }
  | { readonly type: 'wait'; readonly key: string; readonly waitedMs: number }
  | { readonly type: 'backend-error'; readonly key: string; readonly error: CacheBackendError }
  /** The in-process tier's bus was subscribed (`up`) or lost (`down`: the tier emptied). */
  | { readonly type: 'local-tier'; readonly state: TierState };

/** No tag keys (a get without tags). */
const NO_KEYS: readonly string[] = [];
/** What a read without an in-process tier keeps: nothing. */
const ignore = (): void => undefined;

/** Options of {@link LeaseCache}. */
export interface LeaseCacheOptions {
  /** An ioredis client, or node-redis through `fromNodeRedis`. */
  readonly client: RedisClientLike;
  /** Prefix of every Redis key the cache writes. @default 'raceguard:cache:' */
  readonly prefix?: string;
  /** How long a filled value is fresh. @default 60000 */
  readonly ttlMs?: number;
  /**
   * How long after that (or after a two-phase invalidation) the old value
   * may still be served to callers while one caller refreshes it. @default 0
   */
  readonly staleMs?: number;
  /** A fill's lease: how long a crashed filler blocks the key. @default 10000 */
  readonly leaseMs?: number;
  /**
   * How long a caller waits for another caller's fill; `0` does not wait
   * (as a lock's `waitMs: 0` tries once): it fails with `CacheWaitTimeoutError` at once.
   * @default 5000
   */
  readonly waitMs?: number;
  /**
   * Pause between looks while waiting for a fill (with a `subscriber`, the
   * fallback should a wake-up be missed).
   * @default 20 (250 with a subscriber)
   */
  readonly pollMs?: number;
  /**
   * A dedicated connection (`client.duplicate()`) on which waiters subscribe
   * to their key's fill: woken the moment it lands instead of at their next
   * poll.
   */
  readonly subscriber?: RedisSubscriberLike;
  /**
   * Longest wait for one Redis call (a Redis that died or paused must not
   * hold requests: a command waits in the client's queue while it reconnects).
   * @default 1000
   */
  readonly callTimeoutMs?: number;
  /**
   * When Redis fails: `true` serves the loader's value without caching it
   * (the service keeps working, the database takes the load); `false`
   * rejects with `CacheBackendError`. Either way nothing stale is served.
   * @default true
   */
  readonly failOpen?: boolean;
  /**
   * How values become strings and back (e.g. superjson, to keep `Date`s).
   * @default JSON
   */
  readonly serializer?: CacheSerializer;
  /**
   * An in-process tier in front of Redis (needs `subscriber`): hits served
   * from this process's memory, kept coherent with every other instance by
   * a pub/sub bus on which each change of a value is announced. A message
   * that arrives while a local copy is being read from Redis voids that
   * copy, so the tier never keeps a value an invalidation replaced. Another
   * instance's change reaches this tier one pub/sub delivery after the
   * writer's call returned (typically well under a millisecond); this
   * process's own changes apply at once.
   */
  readonly local?: LocalTierOptions;
  /** Told of hits, misses, fills, refused fills, waits and Redis failures; must not throw. */
  readonly onEvent?: (event: CacheEvent) => void;
}

/** Options of {@link LeaseCacheOptions.local}. */
export interface LocalTierOptions {
  /** Most values held; the least recently used goes first. @default 10000 */
  readonly maxEntries?: number;
  /** How long a local copy is served, at most. @default the cache's `ttlMs` */
  readonly ttlMs?: number;
}

/** Turns values into the strings Redis stores, and back. */
export interface CacheSerializer {
  serialize(value: unknown): string;
  deserialize(text: string): unknown;
}

const JSON_SERIALIZER: CacheSerializer = {
  serialize: (value) => {
    const text = JSON.stringify(value);
    if (text === undefined) throw new Error('JSON.stringify returned nothing');
    return text;
  },
  deserialize: (text) => JSON.parse(text) as unknown,
};

/** Options of one {@link LeaseCache.get}. */
export interface CacheGetOptions {
  readonly signal?: AbortSignal;
  /**
   * Tags of the key (`product:42`, `category:7`): {@link LeaseCache.invalidateTag}
   * invalidates every key filled with the tag, voiding fills in flight. Tags
   * need a single Redis (the tag's keys live in other Cluster slots).
   */
  readonly tags?: readonly string[];
}

/** Options of one {@link LeaseCache.write}. */
export interface CacheWriteOptions {
  /**
   * The value's version, from a version column the writing statement
   * increments under the row lock (`SET version = version + 1 ... RETURNING
   * version`; `optimisticUpdate` and `compareAndSet` of `raceguard/postgres`
   * return it). pg returns `bigint` columns as decimal strings: pass them as
   * they are. Not `xmin`: transaction ids are handed out at a transaction's
   * first write, not in commit order, so a later writer of a row can carry
   * a smaller one (see docs/cache.md).
   */
  readonly version: number | bigint | string;
  /** As {@link CacheGetOptions.tags}. */
  readonly tags?: readonly string[];
}

/** Options of {@link LeaseCache.invalidate} and {@link LeaseCache.invalidateTag}. */
export interface CacheInvalidateOptions {
  /**
   * Two-phase invalidation: keep the entry, marked stale, for callers within
   * `staleMs` while one caller refreshes it. @default false
   */
  readonly mark?: boolean;
}

const MAX_KEY_BYTES = 1024;
const MAX_TAGS = 64;

const OPTIONS = new Set<string>([
  'client',
  'prefix',
  'ttlMs',
  'staleMs',
  'leaseMs',
  'waitMs',
  'pollMs',
  'subscriber',
  'callTimeoutMs',
  'failOpen',
  'serializer',
  'local',
  'onEvent',
]);
const LOCAL_OPTIONS = new Set<string>(['maxEntries', 'ttlMs']);

/**
 * A read-through cache on Redis with fill leases.
 *
 * @example
 * ```ts
 * const cache = new LeaseCache({ client: redis, ttlMs: 60_000 });
 * const price = await cache.get(`price:${id}`, () => loadPrice(id));
 * // the writer, after committing:
 * await cache.invalidate(`price:${id}`);
 * ```
 */
export class LeaseCache implements AsyncDisposable {
  readonly #client: RedisClientLike;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #staleMs: number;
  readonly #leaseMs: number;
  readonly #waitMs: number;
  readonly #pollMs: number;
  readonly #onEvent: ((event: CacheEvent) => void) | undefined;
  readonly #callTimeoutMs: number;
  readonly #failOpen: boolean;
  readonly #wakeups: ReleaseSubscriptions | undefined;
  /** Errors of this process's failed fills, by lease token, for its own waiters. */
  readonly #failures = new Map<string, unknown>();
  readonly #serializer: CacheSerializer;
  readonly #local: LocalTier | undefined;
  readonly #bus: string;

  constructor(options: LeaseCacheOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTIONS, {
      redisTimeoutMs:
        "unset: it is called callTimeoutMs, the one name of a round trip's timeout on every backend",
    });
    const client = options.client as Partial<RedisClientLike> | undefined;
    if (typeof client?.evalsha !== 'function' || typeof client.eval !== 'function') {
      throw new InvalidArgumentError(
        'options.client',
        'an ioredis client (or fromNodeRedis(client))',
        client,
      );
    }
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'raceguard:cache:';
    assertNonEmptyString('options.prefix', this.#prefix);
    this.#ttlMs = options.ttlMs ?? 60_000;
    assertPositiveInteger('options.ttlMs', this.#ttlMs);
    this.#staleMs = options.staleMs ?? 0;
    if (!Number.isSafeInteger(this.#staleMs) || this.#staleMs < 0) {
      throw new InvalidArgumentError(
        'options.staleMs',
        'a non-negative safe integer',
        this.#staleMs,
      );
    }
    this.#leaseMs = options.leaseMs ?? 10_000;
    assertPositiveInteger('options.leaseMs', this.#leaseMs);
    this.#waitMs = options.waitMs ?? 5000;
    assertNonNegativeInteger('options.waitMs', this.#waitMs);
    if (options.subscriber !== undefined) {
      const subscriber = options.subscriber as Partial<RedisSubscriberLike>;
      if (typeof subscriber.subscribe !== 'function' || typeof subscriber.on !== 'function') {
        throw new InvalidArgumentError(
          'options.subscriber',
          'a Redis subscriber connection',
          subscriber,
        );
      }
      this.#wakeups = new ReleaseSubscriptions(options.subscriber);
    }
    this.#pollMs = options.pollMs ?? (options.subscriber === undefined ? 20 : 250);
    assertPositiveInteger('options.pollMs', this.#pollMs);
    this.#callTimeoutMs = options.callTimeoutMs ?? 1000;
    assertPositiveInteger('options.callTimeoutMs', this.#callTimeoutMs);
    this.#failOpen = options.failOpen ?? true;
    if (typeof this.#failOpen !== 'boolean') {
      throw new InvalidArgumentError('options.failOpen', 'a boolean', this.#failOpen);
    }
    if (options.onEvent !== undefined) assertFunction('options.onEvent', options.onEvent);
    this.#onEvent = options.onEvent;
    this.#serializer = options.serializer ?? JSON_SERIALIZER;
    assertPlainObject('options.serializer', this.#serializer);
    for (const method of ['serialize', 'deserialize'] as const) {
      assertFunction(
        `options.serializer.${method}`,
        (this.#serializer as unknown as Record<string, unknown>)[method],
      );
    }
    this.#bus = `${this.#prefix}bus`;
    if (options.local !== undefined) {
      const local = options.local;
      assertPlainObject('options.local', local);
      assertKnownOptions('options.local', local, LOCAL_OPTIONS);
      if (options.subscriber === undefined) {
        throw new InvalidArgumentError(
          'options.subscriber',
          'a subscriber connection (the in-process tier hears of changes on it)',
          undefined,
        );
      }
      const maxEntries = local.maxEntries ?? 10_000;
      assertPositiveInteger('options.local.maxEntries', maxEntries);
      const ttlMs = local.ttlMs ?? this.#ttlMs;
      assertPositiveInteger('options.local.ttlMs', ttlMs);
      this.#local = new LocalTier(options.subscriber, this.#bus, {
        maxEntries,
        ttlMs,
        onState: (state) => this.#emit({ type: 'local-tier', state }),
        publish: (message) => this.#run(PUBLISH, [], [this.#bus, message], this.#bus),
      });
    }
  }

  /** Whether the in-process tier serves (its bus is subscribed); `false` without one. */
  get localTierUp(): boolean {
    return this.#local?.up ?? false;
  }

  /**
   * The value of `key`, loading it with `loader` on a miss. Exactly one
   * caller per key (across processes) loads; the others wait for its fill,
   * or, within `staleMs`, get the previous value. A fill that an
   * invalidation overtook is refused: its caller still gets what it loaded,
   * but the cache keeps nothing stale.
   */
  get<T>(
    key: string,
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    options: CacheGetOptions = {},
  ): Promise<T> {
    let tagKeys: readonly string[];
    try {
      this.#checkKey(key);
      assertFunction('loader', loader);
      assertPlainObject('options', options);
      assertAbortSignal('options.signal', options.signal);
      tagKeys = options.tags === undefined ? NO_KEYS : this.#tagKeysOf(options.tags);
    } catch (error) {
      return rejection(error);
    }
    if (this.#local !== undefined) return this.#getThroughLocal(key, tagKeys, loader, options);
    return this.#lookup(key, tagKeys, loader, options.signal, ignore, performance.now());
  }

  /** {@link get} with the in-process tier: its copy first, and a ticket so a change announced meanwhile voids what is kept. */
  async #getThroughLocal<T>(
    key: string,
    tagKeys: readonly string[],
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    options: CacheGetOptions,
  ): Promise<T> {
    const local = this.#local as LocalTier;
    const copy = local.lookup(key);
    if (copy !== undefined) {
      this.#hit(key, 'local');
      return this.#serializer.deserialize(copy) as T;
    }
    // Taken before the first Redis read: a change announced meanwhile voids the local copy.
    const ticket = local.begin(key);
    let kept: string | undefined;
    try {
      return await this.#lookup(
        key,
        tagKeys,
        loader,
        options.signal,
        (data) => {
          kept = data;
        },
        performance.now(),
      );
    } finally {
      local.settle(ticket, kept);
    }
  }

  /**
   * The Redis tiers: one plain GET of the fresh value, one promise layer
   * over the driver's reply on a hit; on a miss the lease path
   * ({@link #read}); a failed GET fails open or rejects ({@link #getFailed}).
   * `started` is when the caller's wait began.
   */
  #lookup<T>(
    key: string,
    tagKeys: readonly string[],
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
    keep: (data: string) => void,
    started: number,
  ): Promise<T> {
    // The entry's value key: the first of {@link #keysOf}'s names, built alone for a hit.
    return this.#plainGet(`${this.#prefix}v:${identityOf(key)}`, key).then(
      (fresh) =>
        fresh === null
          ? this.#read(key, tagKeys, loader, signal, keep, started)
          : this.#fresh<T>(key, fresh, keep),
      (error: unknown) => this.#getFailed(error, key, loader, signal),
    );
  }

  /** A Redis hit's value, kept for the in-process tier. */
  #fresh<T>(key: string, data: string, keep: (data: string) => void): T {
    this.#hit(key);
    keep(data);
    return this.#serializer.deserialize(data) as T;
  }

  /** A hit, told to whoever listens (the event is built only then). */
  #hit(key: string, tier: 'redis' | 'local' = 'redis'): void {
    if (this.#onEvent !== undefined || cacheEventsWanted()) this.#emit({ type: 'hit', key, tier });
  }

  /** The first GET failed: fail open (the loader's value, uncached) or rethrow. */
  #getFailed<T>(
    error: unknown,
    key: string,
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    if (!(error instanceof CacheBackendError) || !this.#failOpen) return rejection(error);
    this.#emit({ type: 'backend-error', key, error });
    return loader(signal);
  }

  /** The miss path, after a GET that found no fresh value: take the fill lease, wait behind one, or take the stale copy. */
  async #read<T>(
    key: string,
    tagKeys: readonly string[],
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
    keep: (data: string) => void,
    /** When the caller's wait began (before its first GET). */
    started: number,
  ): Promise<T> {
    const keys = this.#keysOf(key);
    const options = { signal };
    let unsubscribe: (() => Promise<void>) | undefined;
    /** The fill this caller waits behind: if it fails, the caller gets its error. */
    let behind = '';
    try {
      for (;;) {
        if (options.signal?.aborted === true) {
          await pause(0, { signal: options.signal });
        }
        const token = randomBytes(12).toString('base64url');
        let reply: [string, string?];
        try {
          // A lease granted after this caller gave up is handed back, never left to block the key.
          const handBack = (late: unknown): unknown =>
            Array.isArray(late) && (late[0] === 'lease' || late[0] === 'stale-lease')
              ? this.#run(RELEASE, keys.slice(0, 3), [token], key)
              : undefined;
          reply = (await this.#run(
            GET_OR_LEASE,
            [...keys.slice(0, 3), keys[4] as string, ...tagKeys],
            [
              token,
              this.#leaseMs,
              identityOf(key),
              this.#leaseMs + this.#ttlMs + this.#staleMs,
              behind,
            ],
            key,
            handBack,
          )) as [string, string?];
        } catch (error) {
          if (!(error instanceof CacheBackendError) || !this.#failOpen) throw error;
          this.#emit({ type: 'backend-error', key, error });
          // Fail open: the loader's value, not cached (nothing can be voided meanwhile).
          return loader(options.signal);
        }
        const [status, raw] = reply;
        if (status === 'hit') {
          this.#emit({ type: 'hit', key, tier: 'redis' });
          keep(raw as string);
          return this.#serializer.deserialize(raw as string) as T;
        }
        if (status === 'stale') {
          this.#emit({ type: 'stale-hit', key });
          return this.#serializer.deserialize(raw as string) as T;
        }
        if (status === 'lease' || status === 'stale-lease') {
          if (status === 'lease') this.#emit({ type: 'miss', key });
          return await this.#fill(key, keys, token, loader, options.signal, keep);
        }
        if (status === 'failed') {
          // The fill this caller waited for failed: its error, not another load.
          const own = this.#failures.get(behind);
          throw own instanceof Error ? own : new CacheLoadError(key, raw ?? '');
        }
        behind = raw ?? '';
        // Another caller holds the lease: wait for its fill.
        const elapsed = performance.now() - started;
        if (elapsed >= this.#waitMs) {
          this.#emit({ type: 'wait', key, waitedMs: elapsed });
          throw new CacheWaitTimeoutError(key, elapsed);
        }
        const wakeups = this.#wakeups;
        const channel = keys[2] as string;
        if (wakeups !== undefined && unsubscribe === undefined) {
          // Listen for the fill, then look again: one that landed meanwhile is seen now.
          unsubscribe = await within(wakeups.subscribe(channel), {
            deadline: started + this.#waitMs,
            signal: options.signal,
            timeout: () => new CacheWaitTimeoutError(key, performance.now() - started),
          });
          continue;
        }
        await pause(Math.min(this.#pollMs, this.#waitMs - elapsed), {
          signal: options.signal,
          ...(wakeups !== undefined && { wakeOn: wakeups.wakeOn(channel) }),
        });
      }
    } finally {
      // Not awaited: the caller has its value; a stalled subscriber
      // connection must not hold it (the UNSUBSCRIBE goes out when it can).
      if (unsubscribe !== undefined) void unsubscribe().catch(() => undefined);
    }
  }

  /**
   * Void every outstanding fill lease of `key` and remove the entry, so that
   * no fill that began before this call can store its value. With
   * `{ mark: true }` (two-phase invalidation) the entry stays, marked stale:
   * callers within `staleMs` may still get it while one caller refreshes.
   */
  async invalidate(key: string, options: CacheInvalidateOptions = {}): Promise<void> {
    this.#checkKey(key);
    const mode = this.#modeOf(options);
    this.#local?.drop(key);
    try {
      await this.#run(
        INVALIDATE,
        this.#keysOf(key).slice(0, 3),
        [mode, this.#bus, this.#busMessage(key), this.#staleMs],
        key,
      );
    } finally {
      // Reads that began while the script ran may have seen the old value.
      this.#local?.drop(key);
    }
  }

  /**
   * {@link invalidate} every key filled or written with `tag`, in one atomic
   * step: fills of those keys in flight are voided, and a fill that begins
   * later loads after the change. Resolves how many keys the tag held.
   *
   * @example
   * ```ts
   * await cache.get(`price:${id}`, () => loadPrice(id), { tags: [`category:${categoryId}`] });
   * // a price change for the whole category:
   * await cache.invalidateTag(`category:${categoryId}`);
   * ```
   */
  async invalidateTag(tag: string, options: CacheInvalidateOptions = {}): Promise<number> {
    const [tagKey] = this.#tagKeysOf([tag]);
    const mode = this.#modeOf(options);
    const identities = await this.#run(
      INVALIDATE_TAG,
      [tagKey as string],
      [this.#prefix, mode, this.#bus, this.#staleMs],
      tag,
    );
    if (!Array.isArray(identities)) return 0;
    // This process's tier forgets them now; other instances when the bus tells them.
    for (const identity of identities) {
      if (typeof identity === 'string') this.#local?.drop(nameOf(identity));
    }
    return identities.length;
  }

  /**
   * Write-through: store `value` as `key`'s value if `version` is newer than
   * the version the cache holds (a row's version column, its `xmin`, a
   * commit LSN as a number), and void outstanding fills. Resolves `false`
   * when an equal or newer version is already there: writers that finish
   * out of order never move the cache backwards.
   */
  async write(key: string, value: unknown, options: CacheWriteOptions): Promise<boolean> {
    this.#checkKey(key);
    assertPlainObject('options', options);
    const tagKeys = options.tags === undefined ? [] : this.#tagKeysOf(options.tags);
    const version = options.version;
    if (
      !(typeof version === 'bigint' && version >= 0n) &&
      !(typeof version === 'number' && Number.isSafeInteger(version) && version >= 0) &&
      !(typeof version === 'string' && /^[0-9]{1,64}$/.test(version))
    ) {
      throw new InvalidArgumentError(
        'options.version',
        'a non-negative integer (number, bigint, or decimal string)',
        version,
      );
    }
    const data = this.#serialise(key, value);
    this.#local?.drop(key);
    try {
      const stored = await this.#run(
        WRITE,
        [...this.#keysOf(key).slice(0, 4), ...tagKeys],
        [
          data,
          // Canonical decimal: no leading zeros, so longer means larger.
          BigInt(version).toString(),
          this.#ttlMs,
          this.#staleMs,
          this.#bus,
          this.#busMessage(key),
          identityOf(key),
          this.#ttlMs + this.#staleMs,
        ],
        key,
      );
      return stored === 1;
    } finally {
      this.#local?.drop(key);
    }
  }

  /**
   * Stop listening on the subscriber connection (the in-process tier
   * unsubscribes from the bus and forgets its values). The connections
   * themselves stay open: they are the caller's.
   */
  async close(): Promise<void> {
    this.#wakeups?.close();
    await this.#local?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #fill<T>(
    key: string,
    keys: readonly string[],
    token: string,
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
    keep: (data: string) => void,
  ): Promise<T> {
    const loadStarted = performance.now();
    let value: T;
    try {
      value = await loader(signal);
    } catch (error) {
      // The callers waiting behind this fill get its error (this process's
      // as the error itself); a caller that comes later loads again.
      this.#failures.set(token, error);
      setTimeout(() => this.#failures.delete(token), this.#waitMs).unref();
      // Kept for the callers waiting behind this fill (at least 1 ms: Redis refuses PX 0).
      await this.#run(
        FAIL,
        [...keys.slice(0, 3), keys[4] as string],
        [token, messageOf(error).slice(0, 1000), Math.max(1, this.#waitMs)],
        key,
      ).catch(() => undefined);
      throw error;
    }
    let data: string;
    try {
      data = this.#serialise(key, value);
    } catch (error) {
      await this.#run(RELEASE, keys.slice(0, 3), [token], key).catch(() => undefined);
      throw error;
    }
    let stored: unknown;
    try {
      stored = await this.#run(
        FILL,
        keys.slice(0, 3),
        [token, data, this.#ttlMs, this.#staleMs, this.#bus, this.#busMessage(key)],
        key,
      );
    } catch (error) {
      if (!(error instanceof CacheBackendError) || !this.#failOpen) throw error;
      this.#emit({ type: 'backend-error', key, error });
      return value;
    }
    if (stored === 1) {
      keep(data);
      this.#emit({ type: 'fill', key, loadMs: performance.now() - loadStarted });
    } else {
      this.#emit({ type: 'fill-refused', key });
    }
    return value;
  }

  #serialise(key: string, value: unknown): string {
    if (value === undefined) {
      throw new InvalidArgumentError(
        `the value of ${JSON.stringify(key)}`,
        'a JSON value (undefined cannot be cached; return null for "none")',
        value,
      );
    }
    let data: unknown;
    try {
      data = this.#serializer.serialize(value);
    } catch (error) {
      throw new InvalidArgumentError(
        `the value of ${JSON.stringify(key)}`,
        `serialisable (${messageOf(error)})`,
        value,
      );
    }
    if (typeof data !== 'string') {
      throw new InvalidArgumentError(
        `the value of ${JSON.stringify(key)}`,
        'serialisable to a string',
        value,
      );
    }
    return data;
  }

  #checkKey(key: string): void {
    assertNonEmptyString('key', key);
    if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
      throw new InvalidArgumentError('key', `at most ${MAX_KEY_BYTES} bytes`, key);
    }
  }

  #keysOf(key: string): string[] {
    // One hash tag per key: its entry and its lease live in one Redis Cluster slot.
    const identity = identityOf(key);
    return [
      `${this.#prefix}v:${identity}`,
      `${this.#prefix}s:${identity}`,
      `${this.#prefix}l:${identity}`,
      `${this.#prefix}n:${identity}`,
      `${this.#prefix}e:${identity}`,
    ];
  }

  #tagKeysOf(tags: readonly string[]): string[] {
    if (!Array.isArray(tags) || tags.length > MAX_TAGS) {
      throw new InvalidArgumentError('options.tags', `an array of at most ${MAX_TAGS} tags`, tags);
    }
    const keys = new Set<string>();
    for (const tag of tags) {
      assertNonEmptyString('tag', tag);
      if (Buffer.byteLength(tag, 'utf8') > MAX_KEY_BYTES) {
        throw new InvalidArgumentError('tag', `at most ${MAX_KEY_BYTES} bytes`, tag);
      }
      keys.add(`${this.#prefix}t:${identityOf(tag)}`);
    }
    return [...keys];
  }

  #busMessage(key: string): string {
    return JSON.stringify([identityOf(key)]);
  }

  #modeOf(options: CacheInvalidateOptions): 'mark' | 'delete' {
    assertPlainObject('options', options);
    if (options.mark !== undefined && typeof options.mark !== 'boolean') {
      throw new InvalidArgumentError('options.mark', 'a boolean', options.mark);
    }
    return options.mark === true ? 'mark' : 'delete';
  }

  /** `GET`, bounded like every call; through a script for clients without one. */
  #plainGet(redisKey: string, key: string): Promise<string | null> {
    const get = (this.#client as { get?: unknown }).get;
    if (typeof get !== 'function') {
      return this.#run(PLAIN_GET, [redisKey], [], key) as Promise<string | null>;
    }
    let reply: Promise<string | null>;
    try {
      reply = (get as (k: string) => Promise<string | null>).call(this.#client, redisKey);
    } catch (error) {
      reply = rejection(error);
    }
    return this.#bounded(reply, key);
  }

  #run(
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    key: string,
    late?: (reply: unknown) => unknown,
  ): Promise<unknown> {
    return this.#bounded(script.run(this.#client, keys, args), key, late);
  }

  /** A Redis call held to `callTimeoutMs`; its failure as a `CacheBackendError`. */
  #bounded<R>(call: Promise<R>, key: string, late?: (reply: R) => unknown): Promise<R> {
    return within(call, {
      deadline: performance.now() + this.#callTimeoutMs,
      timeout: () => new Error(`no answer within ${this.#callTimeoutMs} ms`),
      late,
    }).catch((error: unknown) => {
      throw new CacheBackendError(
        `cache key ${JSON.stringify(key)}: Redis failed: ${messageOf(error)}`,
        error,
      );
    });
  }

  #emit(event: CacheEvent): void {
    if (event.type !== 'local-tier') {
      publishCache(() => ({
        event: event.type,
        key: event.key,
        ...(event.type === 'hit' && { tier: event.tier }),
        ...(event.type === 'fill' && { ms: event.loadMs }),
        ...(event.type === 'wait' && { ms: event.waitedMs }),
      }));
    }
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener's failure must not break a read.
    }
  }
}
