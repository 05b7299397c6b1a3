/**
 * `raceguard/etcd`: a revision-ordered lock on etcd with consensus-minted fencing tokens.
 *
 * @packageDocumentation
 */
export { EtcdLock, type EtcdLockOptions } from './etcd-lock.js';
