/**
 * What the library's other Redis-backed features (the lease cache) build
 * on, in one place: Lua scripts sent by digest with the `NOSCRIPT`
 * fallback, pub/sub subscriptions shared by the waiters of an instance, and
 * the client shapes (ioredis; node-redis through `fromNodeRedis`). The
 * rest of this folder is the locks' and the idempotency store's own.
 */
export { LuaScript } from './script.js';
export { ReleaseSubscriptions } from './release-subscriptions.js';
export type { RedisClientLike, RedisSubscriberLike } from './types.js';
