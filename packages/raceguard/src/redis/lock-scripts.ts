/** The Lua scripts and key names of a Redis lock, shared by the single-node lock and Redlock. */
import { assertOneOf } from '../core/validate.js';
import { LuaScript } from './script.js';

/**
 * Where a Redis lock counts its fencing tokens: `per-key`, one counter per
 * lock name, in the name's cluster slot; `shared`, one counter for every
 * name under the prefix (see `RedisLockOptions.fenceCounter`).
 */
export type FenceCounter = 'per-key' | 'shared';

/** Check a `fenceCounter` option; `undefined` means `per-key`. */
export function checkFenceCounter(value: unknown): FenceCounter {
  const counter = value ?? 'per-key';
  assertOneOf('options.fenceCounter', counter, ['per-key', 'shared'] as const);
  return counter;
}

/** The key of the fencing counter for lock name `key`. */
export function fenceKey(prefix: string, key: string, counter: FenceCounter): string {
  return counter === 'shared' ? `${prefix}fence` : `${prefix}fence:{${key}}`;
}

// KEYS[1] lock, KEYS[2] fencing counter; ARGV[1] owner, ARGV[2] ttl ms.
// The grant and its token are minted in one atomic script: no holder ever
// exists without a token, and tokens follow grant order.
export const ACQUIRE = new LuaScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}`);

// KEYS[1] lock; ARGV[1] owner, ARGV[2] channel. Compare-and-delete.
export const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0`);

// KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms. Owner-checked renewal.
export const EXTEND = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`);
