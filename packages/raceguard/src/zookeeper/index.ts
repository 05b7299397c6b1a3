/**
 * `raceguard/zookeeper`: the ZooKeeper lock recipe with zxid fencing tokens.
 *
 * @packageDocumentation
 */
export {
  ZooKeeperLock,
  type ZooKeeperLockOptions,
  type ZooKeeperClientLike,
} from './zookeeper-lock.js';
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
