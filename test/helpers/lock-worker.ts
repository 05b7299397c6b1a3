/**
 * One process of the mutual-exclusion checker: takes the lock `count` times
 * through the given backend and, inside it, reads the shared counter, pauses,
 * writes counter + 1, and appends (token, read, written) to the history.
 */
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import zookeeper from 'node-zookeeper-client';
import pg from 'pg';
import { withLock, type Locker } from '../../packages/raceguard/src/core/lock.js';
import { EtcdLock } from '../../packages/raceguard/src/etcd/etcd-lock.js';
import { PostgresLeaseLock } from '../../packages/raceguard/src/postgres/lease-lock.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { ZooKeeperLock } from '../../packages/raceguard/src/zookeeper/zookeeper-lock.js';

const [backend, endpoint, databaseUrl, searchPath, worker, count] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
];
const pool = new pg.Pool({
  connectionString: databaseUrl,
  max: 2,
  options: `-c search_path=${searchPath}`,
});
const closers: (() => void)[] = [];

async function locker(): Promise<Locker> {
  switch (backend) {
    case 'redis': {
      const client = new Redis(endpoint);
      const subscriber = client.duplicate();
      closers.push(
        () => client.disconnect(),
        () => subscriber.disconnect(),
      );
      return new RedisLock({ client, subscriber, prefix: 'mx:' });
    }
    case 'postgres':
      return new PostgresLeaseLock({ client: pool, pollMs: 5 });
    case 'etcd': {
      const client = new Etcd3({ hosts: endpoint });
      closers.push(() => client.close());
      return new EtcdLock({ client, prefix: 'mx/' });
    }
    case 'zookeeper': {
      const client = zookeeper.createClient(endpoint, { sessionTimeout: 4000 });
      await new Promise<void>((resolve) => {
        client.once('connected', () => resolve());
        client.connect();
      });
      closers.push(() => client.close());
      return new ZooKeeperLock({ client, prefix: '/mx' });
    }
    case 'none': {
      // The control: a "lock" that lets everyone in at once.
      let grants = 0n;
      const free = (key: string) =>
        Promise.resolve({
          key,
          token: BigInt(worker) * 1_000_000n + ++grants,
          validUntil: Number.POSITIVE_INFINITY,
          signal: new AbortController().signal,
          extend: () => Promise.resolve(),
          release: () => Promise.resolve(),
          [Symbol.asyncDispose]: () => Promise.resolve(),
        });
      return { acquire: free, tryAcquire: free };
    }
    default:
      throw new Error(`unknown backend ${backend}`);
  }
}

const locks = await locker();
// Start together, so the processes really contend: tell the parent this one
// is ready and wait for its go, sent once every worker is ready (a start
// time on the clock is missed when start-up is slow on a loaded machine).
const go = new Promise<void>((resolve) => {
  process.once('message', () => resolve());
});
process.send?.('ready');
await go;
process.disconnect?.();
for (let i = 0; i < Number(count); i++) {
  await withLock(
    locks,
    `counter-${backend}`,
    async (lock) => {
      const { rows } = await pool.query('SELECT value FROM mx_counter WHERE backend = $1', [
        backend,
      ]);
      const read = Number(rows[0]?.value);
      await new Promise((r) => setTimeout(r, 1));
      await pool.query('UPDATE mx_counter SET value = $2 WHERE backend = $1', [backend, read + 1]);
      await pool.query(
        'INSERT INTO mx_history (backend, worker, token, read, written) VALUES ($1, $2, $3, $4, $5)',
        [backend, worker, lock.token.toString(), read, read + 1],
      );
    },
    // ZooKeeper's lease is its session: it refuses ttlMs.
    backend === 'zookeeper' ? { waitMs: 60_000 } : { ttlMs: 10_000, waitMs: 60_000 },
  );
}
for (const close of closers) close();
await pool.end();
