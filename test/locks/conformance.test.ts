/**
 * Every lock backend against the one contract (./contract.ts), on real
 * servers: in-process, Redis, Redlock (3 nodes), the PostgreSQL lease lock
 * (polling and with a LISTEN connection), PostgreSQL advisory locks, MySQL
 * GET_LOCK locks (on MariaDB), etcd and ZooKeeper. Round trips are stalled for real: a server process
 * stopped with SIGSTOP, a table locked by another transaction, a pool with
 * no free connection.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import zookeeper from 'node-zookeeper-client';
import pg from 'pg';
import type { Locker } from '../../packages/raceguard/src/core/lock.js';
import { EtcdLock } from '../../packages/raceguard/src/etcd/etcd-lock.js';
import { startEtcdServer, type EtcdServer } from '../../packages/raceguard/src/testing/etcd.js';
import { KeyedSemaphore } from '../../packages/raceguard/src/local/keyed-semaphore.js';
import { PostgresAdvisoryLock } from '../../packages/raceguard/src/postgres/advisory-lock.js';
import {
  PostgresLeaseLock,
  createLockTables,
  type PostgresLeaseLockOptions,
} from '../../packages/raceguard/src/postgres/lease-lock.js';
import { Redlock } from '../../packages/raceguard/src/redis/redlock.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';
import {
  startZooKeeperServer,
  type ZooKeeperServer,
} from '../../packages/raceguard/src/testing/zookeeper.js';
import { ZooKeeperLock } from '../../packages/raceguard/src/zookeeper/zookeeper-lock.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';
import type mysql from 'mysql2/promise';
import {
  MysqlAdvisoryLock,
  MysqlLeaseLock,
  createMysqlLockTables,
} from '../../packages/raceguard/src/mysql/index.js';
import { lockContract, type Stall } from './contract.js';

/** SIGSTOP/SIGCONT of server processes. */
const pauseProcesses = (
  processes: () => readonly {
    readonly pid?: number | undefined;
    kill(signal: NodeJS.Signals): boolean;
  }[],
): Stall => ({
  // Resolves once the kernel shows every process stopped: a reply sent
  // between the signal and the stop would make the stall start late.
  async begin() {
    for (const p of processes()) p.kill('SIGSTOP');
    for (const p of processes()) {
      while (
        p.pid !== undefined &&
        !/^\d+ \(.*\) [Tt] /.test(readFileSync(`/proc/${p.pid}/stat`, 'utf8'))
      ) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  },
  end: () => Promise.resolve(void processes().forEach((p) => p.kill('SIGCONT'))),
});

/** SIGKILL a server process and wait for it to be gone. */
async function killed(server: { readonly process: ChildProcess }): Promise<void> {
  if (server.process.exitCode !== null || server.process.signalCode !== null) return;
  const exited = once(server.process, 'exit');
  server.process.kill('SIGKILL');
  await exited;
}

const closers: (() => unknown)[] = [];
const closeAll = async (): Promise<void> => {
  for (const close of closers.splice(0).reverse())
    await Promise.resolve(close()).catch(() => undefined);
};

const redisClients = new Map<string, Redis[]>();
function redisClient(url: string): Redis {
  // Fail fast while the server is paused or gone instead of queueing forever.
  const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  client.on('error', () => undefined);
  closers.push(() => client.disconnect());
  redisClients.set(url, [...(redisClients.get(url) ?? []), client]);
  return client;
}

/** Start a killed Redis again on its port; resolves once every client of it has reconnected. */
async function restartRedis(server: RedisServer): Promise<RedisServer> {
  const restarted = await startRedisServer({ port: server.port });
  await Promise.all(
    (redisClients.get(server.url) ?? [])
      .filter((c) => c.status !== 'ready')
      .map((c) => once(c, 'ready')),
  );
  return restarted;
}

lockContract({
  name: 'KeyedMutex (in-process)',
  lease: 'local',
  orderedTokens: true,
  start: () => Promise.resolve(),
  locker: (() => {
    // One process, one lock table: two "lockers" are the same instance.
    const shared = new KeyedSemaphore({ permits: 1 });
    return () => Promise.resolve(shared);
  })(),
  construct: (extra) => Promise.resolve(new KeyedSemaphore({ permits: 1, ...extra })),
  stop: () => Promise.resolve(),
});

{
  let server: RedisServer;
  const prefix = `c${randomBytes(3).toString('hex')}:`;
  lockContract({
    name: 'RedisLock',
    lease: 'lease',
    orderedTokens: true,
    stall: pauseProcesses(() => [server.process]),
    crash: {
      kill: () => killed(server),
      async restart() {
        server = await restartRedis(server);
      },
    },
    async start() {
      server = await startRedisServer();
    },
    locker: () =>
      Promise.resolve(
        new RedisLock({
          client: redisClient(server.url),
          subscriber: redisClient(server.url),
          prefix,
        }),
      ),
    construct: (extra) =>
      Promise.resolve(new RedisLock({ client: redisClient(server.url), prefix, ...extra })),
    async stop() {
      await closeAll();
      await server.stop();
    },
  });
}

{
  let servers: RedisServer[] = [];
  const prefix = `c${randomBytes(3).toString('hex')}:`;
  const redlock = (extra: Record<string, unknown> = {}) =>
    new Redlock({
      clients: servers.map((s) => redisClient(s.url)),
      subscribers: servers.map((s) => redisClient(s.url)),
      prefix,
      // Longer than the stall test's windows: a paused node is slow, not yet failed.
      callTimeoutMs: 1000,
      ...extra,
    });
  lockContract({
    name: 'Redlock (3 nodes)',
    lease: 'lease',
    // Per-node counters: a best effort, documented.
    orderedTokens: false,
    stall: pauseProcesses(() => servers.map((s) => s.process)),
    // Two of three nodes gone: no majority is possible.
    crash: {
      kill: async () => void (await Promise.all(servers.slice(1).map(killed))),
      async restart() {
        servers = [
          servers[0] as RedisServer,
          ...(await Promise.all(servers.slice(1).map(restartRedis))),
        ];
      },
    },
    async start() {
      servers = await Promise.all([startRedisServer(), startRedisServer(), startRedisServer()]);
    },
    locker: () => Promise.resolve(redlock()),
    construct: (extra) => Promise.resolve(redlock(extra)),
    async stop() {
      await closeAll();
      await Promise.all(servers.map((s) => s.stop()));
    },
  });
}

for (const withListener of [false, true]) {
  let db: TestDatabase;
  const table = `locks_${randomBytes(3).toString('hex')}`;
  let blocker: pg.PoolClient | undefined;
  const make = async (extra: Record<string, unknown> = {}): Promise<Locker> => {
    const options: Record<string, unknown> = {
      client: db.newPool(8),
      table,
      pollMs: 20,
      ...extra,
    };
    if (withListener) {
      const listener = new pg.Client({
        connectionString: db.url,
        options: `-c search_path=${db.schema}`,
      });
      listener.on('error', () => undefined);
      await listener.connect();
      closers.push(() => listener.end());
      options.listener = listener;
    }
    return new PostgresLeaseLock(options as unknown as PostgresLeaseLockOptions);
  };
  lockContract({
    name: `PostgresLeaseLock (${withListener ? 'LISTEN' : 'polling'})`,
    lease: 'lease',
    orderedTokens: true,
    stall: {
      // Every grant statement waits behind a transaction that holds the table.
      async begin() {
        blocker = await db.pool.connect();
        await blocker.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      },
      async end() {
        await blocker?.query('COMMIT');
        blocker?.release();
        blocker = undefined;
      },
    },
    async start() {
      db = await openTestDatabase(10);
      await createLockTables(db.pool, { table });
    },
    locker: () => make(),
    construct: (extra) => make(extra),
    async stop() {
      await closeAll();
      await db.close();
    },
  });
}

{
  let db: TestDatabase;
  const POOL = 4;
  const pools: pg.Pool[] = [];
  const hostages: pg.PoolClient[] = [];
  const make = (extra: Record<string, unknown> = {}) => {
    const pool = db.newPool(POOL);
    pools.push(pool);
    return new PostgresAdvisoryLock({ client: pool, ...extra });
  };
  lockContract({
    name: 'PostgresAdvisoryLock',
    lease: 'none',
    orderedTokens: true,
    stall: {
      // Pools with no free connection: `connect()` hangs until one comes back.
      async begin() {
        for (const pool of pools)
          hostages.push(...(await Promise.all(Array.from({ length: POOL }, () => pool.connect()))));
      },
      end() {
        for (const client of hostages.splice(0)) client.release();
        return Promise.resolve();
      },
    },
    async start() {
      db = await openTestDatabase(10);
      await createLockTables(db.pool);
    },
    locker: () => Promise.resolve(make()),
    construct: (extra) => Promise.resolve(make(extra)),
    async stop() {
      for (const client of hostages.splice(0)) client.release();
      await db.close();
    },
  });
}

/** A MySQL lock backend on MariaDB, stalled by pools with no free connection (`getConnection()` waits). */
function mysqlBackend(
  name: string,
  lease: 'lease' | 'none',
  createTables: (pool: mysql.Pool) => Promise<void>,
  construct: (pool: mysql.Pool, prefix: string, extra: Record<string, unknown>) => Locker,
): void {
  let db: TestMysql;
  const POOL = 4;
  const hostages: mysql.PoolConnection[] = [];
  const pools: mysql.Pool[] = [];
  const make = (extra: Record<string, unknown> = {}) => {
    const pool = db.newPool(POOL);
    pools.push(pool);
    return construct(pool, `${db.database}:`, extra);
  };
  lockContract({
    name,
    lease,
    orderedTokens: true,
    stall: {
      async begin() {
        for (const pool of pools)
          hostages.push(
            ...(await Promise.all(Array.from({ length: POOL }, () => pool.getConnection()))),
          );
      },
      end() {
        for (const connection of hostages.splice(0)) connection.release();
        return Promise.resolve();
      },
    },
    async start() {
      db = await openTestMysql(10);
      await createTables(db.pool);
    },
    locker: () => Promise.resolve(make()),
    construct: (extra) => Promise.resolve(make(extra)),
    async stop() {
      for (const connection of hostages.splice(0)) connection.release();
      await db.close();
    },
  });
}

mysqlBackend(
  'MysqlAdvisoryLock',
  'none',
  (pool) => createMysqlLockTables(pool),
  (pool, prefix, extra) => new MysqlAdvisoryLock({ client: pool, prefix, ...extra }),
);
mysqlBackend(
  'MysqlLeaseLock',
  'lease',
  (pool) => createMysqlLockTables(pool),
  (pool, prefix, extra) =>
    new MysqlLeaseLock({ client: pool, prefix, ttlMs: 10_000, pollMs: 10, ...extra }),
);

{
  let server: EtcdServer;
  const prefix = `c${randomBytes(3).toString('hex')}/`;
  const make = (extra: Record<string, unknown> = {}) => {
    const client = new Etcd3({ hosts: server.endpoint, dialTimeout: 2000 });
    closers.push(() => client.close());
    return new EtcdLock({ client, prefix, ttlMs: 10_000, ...extra });
  };
  lockContract({
    name: 'EtcdLock',
    lease: 'lease',
    minTtlMs: 2000,
    fixedLeaseLength: true,
    orderedTokens: true,
    stall: pauseProcesses(() => [server.process]),
    crash: { kill: () => killed(server) },
    async start() {
      server = await startEtcdServer();
    },
    locker: () => Promise.resolve(make()),
    construct: (extra) => Promise.resolve(make(extra)),
    async stop() {
      await closeAll();
      await server.stop();
    },
  });
}

{
  let server: ZooKeeperServer;
  const prefix = `/c${randomBytes(3).toString('hex')}`;
  const connect = async () => {
    const client = zookeeper.createClient(server.connectionString, {
      sessionTimeout: 10_000,
      spinDelay: 100,
      retries: 2,
    });
    closers.push(() => client.close());
    await new Promise<void>((resolve) => {
      client.once('connected', () => resolve());
      client.connect();
    });
    return client;
  };
  lockContract({
    name: 'ZooKeeperLock',
    lease: 'none',
    orderedTokens: true,
    stall: pauseProcesses(() => [server.process]),
    async start() {
      server = await startZooKeeperServer({ tickTimeMs: 200 });
    },
    locker: async () => new ZooKeeperLock({ client: await connect(), prefix }),
    construct: async (extra) => new ZooKeeperLock({ client: await connect(), prefix, ...extra }),
    async stop() {
      await closeAll();
      await server.stop();
    },
  });
}
