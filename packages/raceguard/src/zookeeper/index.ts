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
