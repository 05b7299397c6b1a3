/**
 * `raceguard/zookeeper`: the ZooKeeper lock recipe with zxid fencing tokens.
 *
 * @packageDocumentation
 */
export { ZooKeeperLock, type ZooKeeperLockOptions } from './zookeeper-lock.js';
