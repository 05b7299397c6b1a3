/**
 * `raceguard/redis`: locks and fenced writes on Redis (ioredis-compatible clients).
 *
 * @packageDocumentation
 */
export { RedisLock, type RedisLockOptions } from './redis-lock.js';
export { fencedSet } from './fenced-set.js';
export { LuaScript } from './script.js';
export type { RedisClientLike, RedisSubscriberLike } from './types.js';
