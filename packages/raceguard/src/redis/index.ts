/**
 * `raceguard/redis`: locks and fenced writes on Redis (ioredis-compatible clients).
 *
 * @packageDocumentation
 */
export { RedisLock, type RedisLockOptions } from './redis-lock.js';
export { Redlock, QuorumNotReachedError, type RedlockOptions, type NodeVote } from './redlock.js';
export { fencedSet } from './fenced-set.js';
export type { FenceCounter } from './lock-scripts.js';
export { LuaScript } from './script.js';
export type { RedisClientLike, RedisSubscriberLike } from './types.js';
export { RedisIdempotencyStore, type RedisIdempotencyStoreOptions } from './idempotency-store.js';
export {
  fromNodeRedis,
  subscriberFromNodeRedis,
  type NodeRedisClientLike,
  type NodeRedisSubscriberLike,
} from './node-redis.js';
