/** Idempotency records in Redis. */
import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import type {
  ClaimRequest,
  ClaimResult,
  IdempotencyStore,
  OwnerRequest,
} from '../idempotency/store.js';
import { sha256 } from '../idempotency/fingerprint.js';
import { LuaScript } from './script.js';
import type { RedisClientLike } from './types.js';

// Record: a hash {fp, owner, attempts, rp, result} with the record's expiry;
// lease: a plain key holding the owner, expiring with the lease (server clock).
// KEYS[1] record, KEYS[2] lease. ARGV: fingerprint, owner, lease ms, ttl ms.
const CLAIM = new LuaScript(`
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2], 'attempts', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return {1, 1}
end
if fp ~= ARGV[1] then return {2} end
local result = redis.call('HGET', KEYS[1], 'result')
if result then return {3, result} end
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {0, left} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {1, attempts, redis.call('HGET', KEYS[1], 'rp')}`);

// KEYS[1] record, KEYS[2] lease. ARGV: owner, result, ttl ms.
const COMPLETE = new LuaScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
return 1`);

// KEYS[1] record, KEYS[2] lease. ARGV: owner, lease ms.
const RENEW = new LuaScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1`);

// KEYS[1] record, KEYS[2] lease. ARGV: owner, '1' to keep the record.
const ABANDON = new LuaScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'owner') else redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
return 1`);

// KEYS[1] record. ARGV: owner, recovery point.
const ADVANCE = new LuaScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rp', ARGV[2])
return 1`);

/** Options of {@link RedisIdempotencyStore}. */
export interface RedisIdempotencyStoreOptions {
  /** An ioredis client (or anything with `evalsha`/`eval`). */
  readonly client: RedisClientLike;
  /** Prefix of every key the store writes. @default 'raceguard:idem:' */
  readonly prefix?: string;
}

/**
 * Idempotency records in Redis: each operation is one Lua script (run by
 * hash, sent in full only after `NOSCRIPT`), so a claim is one round trip
 * and atomic. Leases and record expiry use the server's clock (`PX`,
 * `PEXPIRE`), so a crashed owner's claim frees itself and records vanish
 * after their TTL with no reaper. Record keys are a SHA-256 of scope and
 * key inside a hash tag, so a record and its lease share a Redis Cluster slot.
 *
 * Durability is Redis's: without AOF `appendfsync always`, a Redis crash
 * can forget completed records and let a retry run again. Use the
 * PostgreSQL store when that matters.
 *
 * @example
 * ```ts
 * const store = new RedisIdempotencyStore({ client: new Redis() });
 * await idempotent(store, { scope: user.id, key, payload: body }, () => charge(body));
 * ```
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  readonly #client: RedisClientLike;
  readonly #prefix: string;

  constructor(options: RedisIdempotencyStoreOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, new Set(['client', 'prefix']));
    const { client } = options;
    if (
      typeof client !== 'object' ||
      client === null ||
      typeof client.evalsha !== 'function' ||
      typeof client.eval !== 'function'
    ) {
      throw new InvalidArgumentError('options.client', 'a Redis client (ioredis)', client);
    }
    const prefix = options.prefix ?? 'raceguard:idem:';
    if (typeof prefix !== 'string') {
      throw new InvalidArgumentError('options.prefix', 'a string', prefix);
    }
    this.#client = client;
    this.#prefix = prefix;
  }

  #keys(id: { scope: string; key: string }): [string, string] {
    const digest = sha256(`${id.scope}\0${id.key}`);
    const record = `${this.#prefix}{${digest}}`;
    return [record, `${record}:lease`];
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    const keys = this.#keys(request);
    const args = [request.fingerprint, request.owner, request.leaseMs, request.ttlMs];
    // On the request path the driver's reply is awaited directly (see LuaScript.send).
    let reply: [number, (number | string)?, string?];
    try {
      reply = (await CLAIM.send(this.#client, keys, args)) as typeof reply;
    } catch (error) {
      reply = (await CLAIM.recover(this.#client, keys, args, error)) as typeof reply;
    }
    switch (reply[0]) {
      case 1:
        return {
          kind: 'claimed',
          resumed: Number(reply[1]) > 1,
          recoveryPoint: reply[2] ?? null,
        };
      case 2:
        return { kind: 'mismatch' };
      case 3:
        return { kind: 'completed', result: String(reply[1]) };
      default:
        return { kind: 'in-progress', retryAfterMs: Number(reply[1]) };
    }
  }

  async complete(request: OwnerRequest & { result: string; ttlMs: number }): Promise<boolean> {
    const keys = this.#keys(request);
    const args = [request.owner, request.result, request.ttlMs];
    let reply: unknown;
    try {
      reply = await COMPLETE.send(this.#client, keys, args);
    } catch (error) {
      reply = await COMPLETE.recover(this.#client, keys, args, error);
    }
    return reply === 1;
  }

  async renew(request: OwnerRequest & { leaseMs: number }): Promise<boolean> {
    const reply = await RENEW.run(this.#client, this.#keys(request), [
      request.owner,
      request.leaseMs,
    ]);
    return reply === 1;
  }

  async abandon(request: OwnerRequest & { keep: boolean }): Promise<void> {
    await ABANDON.run(this.#client, this.#keys(request), [request.owner, request.keep ? '1' : '0']);
  }

  async advance(request: OwnerRequest & { recoveryPoint: string }): Promise<boolean> {
    const [record] = this.#keys(request);
    const reply = await ADVANCE.run(this.#client, [record], [request.owner, request.recoveryPoint]);
    return reply === 1;
  }
}
