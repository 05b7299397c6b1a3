/**
 * The lock services behind the lab's lock strategies, one locker per lab
 * server (as separate processes would each have their own): an in-process
 * mutex, and Redis, PostgreSQL lease and etcd locks shared through their
 * servers. Redis and etcd are started on free loopback ports for the run.
 */
import type { Locker } from 'raceguard';
import { KeyedMutex } from 'raceguard/local';
import { createMysqlLockTables, MysqlAdvisoryLock, MysqlLeaseLock } from 'raceguard/mysql';
import { createLockTables, PostgresLeaseLock } from 'raceguard/postgres';
import type { LockStrategy, Strategy } from './scenario.js';
import type { LabPool } from './sql.js';

/** This server's lockers: one per lock strategy set up, and MySQL's `GET_LOCK` locker. */
export interface LabLockers {
  readonly lockers: Partial<Record<LockStrategy, Locker>>;
  /** MySQL's advisory locker, when the `advisory-lock` strategy runs there. */
  readonly advisoryLock?: Locker;
}

/**
 * Build one set of lockers per pool (one lab server each) for `strategies`;
 * `cleanup` collects the teardown steps. The lease lock is a table on the
 * lab's database, whichever its dialect. MySQL's `GET_LOCK` locker gets a
 * pool of its own from `lockPool`: every waiter holds a session while it
 * waits, and on the pool the transactions use, a burst of waiters would
 * leave the holder no connection to finish with.
 */
export async function setUpLockers(
  strategies: readonly Strategy[],
  pools: readonly LabPool[],
  cleanup: (() => Promise<unknown>)[],
  lockPool: () => LabPool = () => pools[0] as LabPool,
): Promise<LabLockers[]> {
  const lockers = pools.map((): Partial<Record<LockStrategy, Locker>> => ({}));
  const first = pools[0] as LabPool;
  if (strategies.includes('local-mutex')) {
    for (const set of lockers) set['local-mutex'] = new KeyedMutex();
  }
  if (strategies.includes('lease-lock')) {
    if (first.dialect === 'postgres') await createLockTables(first.driver);
    else await createMysqlLockTables(first.driver);
    pools.forEach(
      (pool, i) =>
        ((lockers[i] as Partial<Record<LockStrategy, Locker>>)['lease-lock'] =
          pool.dialect === 'postgres'
            ? new PostgresLeaseLock({ client: pool.driver, pollMs: 5 })
            : new MysqlLeaseLock({ client: pool.driver, pollMs: 5 })),
    );
  }
  let advisory: (Locker | undefined)[] = pools.map(() => undefined);
  if (strategies.includes('advisory-lock') && first.dialect === 'mysql') {
    // Idempotent: the tables are there already when lease-lock ran.
    await createMysqlLockTables(first.driver);
    advisory = pools.map(() => {
      const own = lockPool();
      return own.dialect === 'mysql' ? new MysqlAdvisoryLock({ client: own.driver }) : undefined;
    });
  }
  if (strategies.includes('redis-lock')) {
    const { startRedisServer } = await import('raceguard/testing');
    const { RedisLock } = await import('raceguard/redis');
    const { Redis } = await import('ioredis');
    const server = await startRedisServer();
    cleanup.push(() => server.stop());
    for (const set of lockers) {
      const client = new Redis(server.url);
      const subscriber = client.duplicate();
      client.on('error', () => undefined);
      subscriber.on('error', () => undefined);
      cleanup.push(() => {
        client.disconnect();
        subscriber.disconnect();
        return Promise.resolve();
      });
      set['redis-lock'] = new RedisLock({ client, subscriber });
    }
  }
  if (strategies.includes('etcd-lock')) {
    const { startEtcdServer } = await import('raceguard/testing');
    const { EtcdLock } = await import('raceguard/etcd');
    const { Etcd3 } = await import('etcd3');
    const server = await startEtcdServer();
    cleanup.push(() => server.stop());
    for (const set of lockers) {
      const client = new Etcd3({ hosts: server.endpoint });
      cleanup.push(() => {
        client.close();
        return Promise.resolve();
      });
      set['etcd-lock'] = new EtcdLock({ client });
    }
  }
  return lockers.map((set, i) => {
    const advisoryLock = advisory[i];
    return advisoryLock === undefined ? { lockers: set } : { lockers: set, advisoryLock };
  });
}
