/**
 * The lock services behind the lab's lock strategies, one locker per lab
 * server (as separate processes would each have their own): an in-process
 * mutex, and Redis, PostgreSQL lease and etcd locks shared through their
 * servers. Redis and etcd are started on free loopback ports for the run.
 */
import type { Locker } from 'raceguard';
import { KeyedMutex } from 'raceguard/local';
import { createLockTable, PostgresLeaseLock, type PoolLike } from 'raceguard/postgres';
import type { LockStrategy } from './scenario.js';

/** Build `servers` sets of lockers for `strategies`; `cleanup` collects the teardown steps. */
export async function setUpLockers(
  strategies: readonly LockStrategy[],
  pools: readonly PoolLike[],
  cleanup: (() => Promise<unknown>)[],
): Promise<Partial<Record<LockStrategy, Locker>>[]> {
  const lockers = pools.map((): Partial<Record<LockStrategy, Locker>> => ({}));
  if (strategies.includes('local-mutex')) {
    for (const set of lockers) set['local-mutex'] = new KeyedMutex();
  }
  if (strategies.includes('lease-lock')) {
    await createLockTable(pools[0] as PoolLike);
    pools.forEach(
      (pool, i) =>
        ((lockers[i] as Partial<Record<LockStrategy, Locker>>)['lease-lock'] =
          new PostgresLeaseLock({ client: pool, pollMs: 5 })),
    );
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
  return lockers;
}
