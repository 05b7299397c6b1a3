/**
 * `raceguard/cache`: a cache that never keeps a stale value. `LeaseCache`
 * is a read-through cache on Redis whose fills carry leases that an
 * invalidation voids, with versioned write-through and two-phase
 * invalidation.
 *
 * @packageDocumentation
 */
export {
  LeaseCache,
  CacheBackendError,
  CacheWaitTimeoutError,
  CacheLoadError,
  type CacheEvent,
  type CacheGetOptions,
  type LeaseCacheOptions,
  type CacheSerializer,
} from './lease-cache.js';
