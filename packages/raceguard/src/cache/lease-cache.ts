/**
 * A read-through cache on Redis that never keeps a stale value: fills carry
 * a lease ("Scaling Memcache at Facebook", NSDI 2013, §3.2.1). A miss hands
 * one caller per key, across all processes, a token; an invalidation voids
 * it; a fill whose token was voided is refused. So a reader that loaded the
 * old row before a writer's invalidation can never write it back.
 */
import { randomBytes } from 'node:crypto';
import { pause, within } from '../core/deadline.js';
import { InvalidArgumentError, RaceguardError, messageOf } from '../core/errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertKnownOptions,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { LuaScript } from '../redis/script.js';
import { ReleaseSubscriptions } from '../redis/release-subscriptions.js';
import type { RedisClientLike, RedisSubscriberLike } from '../redis/types.js';

/** A Redis call of the cache failed; the cause is attached. */
export class CacheBackendError extends RaceguardError {
  constructor(message: string, cause: unknown) {
    super('RACEGUARD_CACHE_BACKEND', message, { cause });
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
  | { readonly type: 'hit' | 'miss' | 'stale-hit'; readonly key: string }
  | { readonly type: 'fill'; readonly key: string; readonly loadMs: number }
  | { readonly type: 'fill-refused'; readonly key: string }
  | { readonly type: 'wait'; readonly key: string; readonly waitedMs: number }
  | { readonly type: 'backend-error'; readonly key: string; readonly error: CacheBackendError };

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
  /** How long a caller waits for another caller's fill. @default 5000 */
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
  readonly redisTimeoutMs?: number;
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
  /** Told of hits, misses, fills, refused fills, waits and Redis failures; must not throw. */
  readonly onEvent?: (event: CacheEvent) => void;
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
}

const MAX_KEY_BYTES = 1024;

// The Redis layout of a key k: v:{k} the fresh value (expires after ttlMs),
// s:{k} a stale copy (after ttlMs + staleMs; only with staleMs), l:{k} the
// fill lease, n:{k} the version of the last write-through. A hit is one plain
// GET of v:{k}; everything else is one script.

// KEYS: v, s, l. ARGV: token, leaseMs.
const GET_OR_LEASE = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v then return {'hit', v} end
local s = redis.call('GET', KEYS[2])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if s then return {'stale-lease', s} end
  return {'lease'}
end
if s then return {'stale', s} end
return {'wait'}
`);

// KEYS: v, s, l. ARGV: token, value, ttlMs, staleMs.
const FILL = new LuaScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]) + tonumber(ARGV[4]))
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', KEYS[3], '1')
return 1
`);

// KEYS: v, s, l. ARGV: token.
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', KEYS[3], '1')
  return 1
end
return 0
`);

// KEYS: v, s, l. ARGV: mode ('delete' | 'mark').
// Voids every outstanding lease of the key: a fill that began before cannot land.
// 'mark' keeps the stale copy for callers within staleMs (two-phase invalidation).
const INVALIDATE = new LuaScript(`
redis.call('DEL', KEYS[3], KEYS[1])
if ARGV[1] ~= 'mark' then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', KEYS[3], '1')
return 1
`);

// KEYS: v, s, l, n. ARGV: value, version (decimal digits), ttlMs, staleMs.
// Stores only a newer version (compared as decimal strings: bigints stay exact),
// and voids leases (a fill in flight carries older data).
const WRITE = new LuaScript(`
local current = redis.call('GET', KEYS[4])
if current and (#current > #ARGV[2] or (#current == #ARGV[2] and current >= ARGV[2])) then
  return 0
end
local keep = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', keep) end
redis.call('SET', KEYS[4], ARGV[2], 'PX', keep)
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', KEYS[3], '1')
return 1
`);

// KEYS: v. For clients without a plain GET (node-redis through fromNodeRedis).
const PLAIN_GET = new LuaScript(`return redis.call('GET', KEYS[1])`);

const OPTIONS = new Set<string>([
  'client',
  'prefix',
  'ttlMs',
  'staleMs',
  'leaseMs',
  'waitMs',
  'pollMs',
  'subscriber',
  'redisTimeoutMs',
  'failOpen',
  'serializer',
  'onEvent',
]);

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
export class LeaseCache {
  readonly #client: RedisClientLike;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #staleMs: number;
  readonly #leaseMs: number;
  readonly #waitMs: number;
  readonly #pollMs: number;
  readonly #onEvent: ((event: CacheEvent) => void) | undefined;
  readonly #redisTimeoutMs: number;
  readonly #failOpen: boolean;
  readonly #wakeups: ReleaseSubscriptions | undefined;
  readonly #serializer: CacheSerializer;

  constructor(options: LeaseCacheOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTIONS);
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
    assertPositiveInteger('options.waitMs', this.#waitMs);
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
    this.#redisTimeoutMs = options.redisTimeoutMs ?? 1000;
    assertPositiveInteger('options.redisTimeoutMs', this.#redisTimeoutMs);
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
  }

  /**
   * The value of `key`, loading it with `loader` on a miss. Exactly one
   * caller per key (across processes) loads; the others wait for its fill,
   * or, within `staleMs`, get the previous value. A fill that an
   * invalidation overtook is refused: its caller still gets what it loaded,
   * but the cache keeps nothing stale.
   */
  async get<T>(
    key: string,
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    options: CacheGetOptions = {},
  ): Promise<T> {
    this.#checkKey(key);
    assertFunction('loader', loader);
    assertPlainObject('options', options);
    assertAbortSignal('options.signal', options.signal);
    const keys = this.#keysOf(key);
    const started = performance.now();
    // The hit path: one plain GET of the fresh value.
    let fresh: string | null;
    try {
      fresh = await this.#plainGet(keys[0] as string, key);
    } catch (error) {
      if (!(error instanceof CacheBackendError) || !this.#failOpen) throw error;
      this.#emit({ type: 'backend-error', key, error });
      return loader(options.signal);
    }
    if (fresh !== null) {
      this.#emit({ type: 'hit', key });
      return this.#serializer.deserialize(fresh) as T;
    }
    let unsubscribe: (() => Promise<void>) | undefined;
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
            keys.slice(0, 3),
            [token, this.#leaseMs],
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
          this.#emit({ type: 'hit', key });
          return this.#serializer.deserialize(raw as string) as T;
        }
        if (status === 'stale') {
          this.#emit({ type: 'stale-hit', key });
          return this.#serializer.deserialize(raw as string) as T;
        }
        if (status === 'lease' || status === 'stale-lease') {
          if (status === 'lease') this.#emit({ type: 'miss', key });
          return this.#fill(key, keys, token, loader, options.signal);
        }
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
      await unsubscribe?.();
    }
  }

  /**
   * Void every outstanding fill lease of `key` and remove the entry, so that
   * no fill that began before this call can store its value. With
   * `{ mark: true }` (two-phase invalidation) the entry stays, marked stale:
   * callers within `staleMs` may still get it while one caller refreshes.
   */
  async invalidate(key: string, options: { readonly mark?: boolean } = {}): Promise<void> {
    this.#checkKey(key);
    assertPlainObject('options', options);
    await this.#run(
      INVALIDATE,
      this.#keysOf(key),
      [options.mark === true ? 'mark' : 'delete'],
      key,
    );
  }

  /**
   * Write-through: store `value` as `key`'s value if `version` is newer than
   * the version the cache holds (a row's version column, its `xmin`, a
   * commit LSN as a number), and void outstanding fills. Resolves `false`
   * when an equal or newer version is already there: writers that finish
   * out of order never move the cache backwards.
   */
  async write(
    key: string,
    value: unknown,
    options: { readonly version: number | bigint },
  ): Promise<boolean> {
    this.#checkKey(key);
    assertPlainObject('options', options);
    const version = options.version;
    if (
      !(typeof version === 'bigint' && version >= 0n) &&
      !(typeof version === 'number' && Number.isSafeInteger(version) && version >= 0)
    ) {
      throw new InvalidArgumentError(
        'options.version',
        'a non-negative integer (number or bigint)',
        version,
      );
    }
    const data = this.#serialise(key, value);
    const stored = await this.#run(
      WRITE,
      this.#keysOf(key),
      [data, version.toString(), this.#ttlMs, this.#staleMs],
      key,
    );
    return stored === 1;
  }

  async #fill<T>(
    key: string,
    keys: readonly string[],
    token: string,
    loader: (signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const loadStarted = performance.now();
    let value: T;
    try {
      value = await loader(signal);
    } catch (error) {
      // The next caller fills.
      await this.#run(RELEASE, keys.slice(0, 3), [token], key).catch(() => undefined);
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
        [token, data, this.#ttlMs, this.#staleMs],
        key,
      );
    } catch (error) {
      if (!(error instanceof CacheBackendError) || !this.#failOpen) throw error;
      this.#emit({ type: 'backend-error', key, error });
      return value;
    }
    this.#emit(
      stored === 1
        ? { type: 'fill', key, loadMs: performance.now() - loadStarted }
        : { type: 'fill-refused', key },
    );
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
    const tagged = `{${key.replaceAll('}', '%7D')}}`;
    return [
      `${this.#prefix}v:${tagged}`,
      `${this.#prefix}s:${tagged}`,
      `${this.#prefix}l:${tagged}`,
      `${this.#prefix}n:${tagged}`,
    ];
  }

  /** `GET`, bounded like every call; through a script for clients without one. */
  async #plainGet(redisKey: string, key: string): Promise<string | null> {
    const get = (this.#client as { get?: unknown }).get;
    if (typeof get !== 'function') {
      return (await this.#run(PLAIN_GET, [redisKey], [], key)) as string | null;
    }
    const reply = (get as (k: string) => Promise<string | null>).call(this.#client, redisKey);
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

  /** A Redis call held to `redisTimeoutMs`; its failure as a `CacheBackendError`. */
  async #bounded<R>(call: Promise<R>, key: string, late?: (reply: R) => unknown): Promise<R> {
    try {
      return await within(call, {
        deadline: performance.now() + this.#redisTimeoutMs,
        timeout: () => new Error(`no answer within ${this.#redisTimeoutMs} ms`),
        ...(late !== undefined && { late }),
      });
    } catch (error) {
      throw new CacheBackendError(
        `cache key ${JSON.stringify(key)}: Redis failed: ${messageOf(error)}`,
        error,
      );
    }
  }

  #emit(event: CacheEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener's failure must not break a read.
    }
  }
}
