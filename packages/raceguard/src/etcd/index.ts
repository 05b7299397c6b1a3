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
