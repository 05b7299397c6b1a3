/**
 * `raceguard/etcd`: a revision-ordered lock on etcd with consensus-minted fencing tokens.
 *
 * @packageDocumentation
 */
export {
  EtcdLock,
  type EtcdLockOptions,
  type EtcdClientLike,
  type EtcdLeaseLike,
  type EtcdWatcherLike,
} from './etcd-lock.js';
// Errors the core throws through this subpath, importable from it (the same classes as `raceguard`'s).
export {
  RaceguardError,
  InvalidArgumentError,
  RetryExhaustedError,
  AbortedError,
} from '../core/errors.js';
export {
  LockAcquireTimeoutError,
  LockBackendError,
  LockLostError,
  LockNotOwnerError,
  LockSessionLostError,
  StaleTokenError,
  UnsupportedLockOptionError,
} from '../core/lock.js';
