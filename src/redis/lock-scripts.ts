/** The Lua scripts of a Redis lock, shared by the single-node lock and Redlock. */
import { LuaScript } from './script.js';

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
