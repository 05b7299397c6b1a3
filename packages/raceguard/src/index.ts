/**
 * `raceguard`: the backend-free core shared by every adapter.
 *
 * @packageDocumentation
 */
export {
  RaceguardError,
  InvalidArgumentError,
  RetryExhaustedError,
  AbortedError,
  type RaceguardErrorOptions,
} from './core/errors.js';
export { retry, type RetryOptions, type RetryEvent, type AttemptContext } from './core/retry.js';
export { backoffDelay, type BackoffOptions } from './core/backoff.js';
export {
  RACEGUARD_CHANNELS,
  type LockEvent,
  type RetryEventMessage,
  type IdempotencyEventMessage,
  type CacheEventMessage,
  type MessageEventMessage,
  type ReplicaEventMessage,
  type LockLostEvent,
  type LockUseEvent,
} from './core/events.js';
export { sleep, throwIfAborted } from './core/abort.js';
export {
  withLock,
  TryOnceLocker,
  LockAcquireTimeoutError,
  LockNotOwnerError,
  LockLostError,
  LockBackendError,
  LockSessionLostError,
  UnsupportedLockOptionError,
  MIN_LEASE_MS,
  StaleTokenError,
  type Locker,
  type LockHandle,
  type AcquireOptions,
  type LockLossReason,
} from './core/lock.js';
export {
  LeaseLocker,
  leaseSettings,
  type LeaseLockerOptions,
  type LeaseLockProtocol,
  type LeaseRoundTrips,
  type LeaseAttempt,
  type ReleaseWait,
} from './core/lease-acquire.js';
export {
  SessionLocker,
  type SessionLockProtocol,
  type LockSession,
  type BeforeDeadline,
} from './core/session-acquire.js';
export * from './idempotency/index.js';
