/**
 * Regression tests for the lock defects an outside review reproduced, each
 * on a real server, each failing on the code before its fix.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import zookeeper from 'node-zookeeper-client';
import pg from 'pg';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  withLock,
  type LockHandle,
  type Locker,
} from '../../packages/raceguard/src/core/lock.js';
import { EtcdLock } from '../../packages/raceguard/src/etcd/etcd-lock.js';
import { startEtcdServer, type EtcdServer } from '../../packages/raceguard/src/testing/etcd.js';
import { KeyedMutex } from '../../packages/raceguard/src/local/keyed-mutex.js';
import { PostgresAdvisoryLock } from '../../packages/raceguard/src/postgres/advisory-lock.js';
import { LockTimeoutError } from '../../packages/raceguard/src/postgres/errors.js';
import { createIdempotencyTable } from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { createLockTables } from '../../packages/raceguard/src/postgres/lease-lock.js';
import { QuorumNotReachedError, Redlock } from '../../packages/raceguard/src/redis/redlock.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';
import {
  startZooKeeperServer,
  type ZooKeeperServer,
} from '../../packages/raceguard/src/testing/zookeeper.js';
import { ZooKeeperLock } from '../../packages/raceguard/src/zookeeper/zookeeper-lock.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('lock regressions', () => {
  let db: TestDatabase;
  let etcd: EtcdServer;
  let zk: ZooKeeperServer;
  let redis: RedisServer[];
  const closers: (() => unknown)[] = [];

  before(async () => {
    const database = openTestDatabase(30);
    const servers = [
      startEtcdServer(),
      startZooKeeperServer(),
      startRedisServer(),
      startRedisServer(),
      startRedisServer(),
    ] as const;
    try {
      [db, etcd, zk, ...redis] = await Promise.all([database, ...servers]);
    } catch (error) {
      // What did start is stopped, so the file fails at once instead of hanging on live servers.
      await Promise.all([
        database.then((d) => d.close()).catch(() => undefined),
        ...servers.map((server) =>
          server.then((s: { stop(): Promise<void> }) => s.stop()).catch(() => undefined),
        ),
      ]);
      throw error;
    }
  });
  after(async () => {
    for (const close of closers.reverse()) await Promise.resolve(close()).catch(() => undefined);
    await Promise.all([etcd.stop(), zk.stop(), ...redis.map((r) => r.stop())]);
    await db.close();
  });

  it('createLockTables and createIdempotencyTable are safe from 20 instances starting at once', async () => {
    const schema = `ddl_${process.pid}`;
    await db.pool.query(`CREATE SCHEMA ${schema}`);
    // Dropped after the pools that use it are closed (closers run first).
    closers.unshift(() => db.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
    const pools = Array.from({ length: 20 }, () => {
      const pool = new pg.Pool({
        connectionString: db.url,
        max: 1,
        options: `-c search_path=${schema}`,
      });
      closers.push(() => pool.end());
      return pool;
    });
    const results = await Promise.allSettled(
      pools.flatMap((pool) => [createLockTables(pool), createIdempotencyTable(pool)]),
    );
    assert.deepEqual(
      results.filter((r) => r.status === 'rejected'),
      [],
      'every concurrent start-up call succeeds (before: 23505 pg_type_typname_nsp_index)',
    );
  });

  it('etcd: lock "a" does not see the holders and waiters of lock "a/b" as its own', async () => {
    const client = new Etcd3({ hosts: etcd.endpoint });
    closers.push(() => client.close());
    const locks = new EtcdLock({ client, prefix: 'esc/', ttlMs: 10_000 });
    const child = await locks.acquire('a/b');
    const parent = await locks.tryAcquire('a');
    assert.ok(parent, 'lock "a" is free while "a/b" is held');
    await parent.release();
    await child.release();
  });

  it('ZooKeeper: 30 locks held at once on one client, without MaxListenersExceededWarning', async () => {
    const client = zookeeper.createClient(zk.connectionString, { sessionTimeout: 10_000 });
    closers.push(() => client.close());
    await new Promise<void>((resolve) => {
      client.once('connected', () => resolve());
      client.connect();
    });
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const locks = new ZooKeeperLock({ client, prefix: '/many' });
      const held = await Promise.all(Array.from({ length: 30 }, (_, i) => locks.acquire(`k${i}`)));
      await Promise.all(held.map((h) => h.release()));
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
        [],
      );
      assert.ok(
        client.listenerCount('expired') <= 1,
        `${client.listenerCount('expired')} listeners`,
      );
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('advisory lock: the session’s own lock_timeout is restored after a wait, not reset to 0', async () => {
    const pool = new pg.Pool({
      connectionString: db.url,
      max: 1,
      options: `-c search_path=${db.schema} -c lock_timeout=7s`,
    });
    closers.push(() => pool.end());
    await createLockTables(db.pool);
    const locks = new PostgresAdvisoryLock({ client: pool });
    const held = await locks.acquire('restore', { waitMs: 5000 });
    await held.release();
    const { rows } = await pool.query<{ lock_timeout: string }>('SHOW lock_timeout');
    assert.equal(rows[0]?.lock_timeout, '7s');
  });

  it('Redlock: with a majority of nodes down it fails at once with the votes, not at the end of the wait', async () => {
    const clients = redis.map((r) => {
      const c = new Redis(r.url, { maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      closers.push(() => c.disconnect());
      return c;
    });
    // 500 ms per node: room for a loaded CI machine; a killed node fails faster.
    const redlock = new Redlock({ clients, callTimeoutMs: 500, prefix: 'ff:' });
    const held = await redlock.acquire('payout', { ttlMs: 5000 });
    for (const server of redis.slice(1)) {
      const exited = once(server.process, 'exit');
      server.process.kill('SIGKILL');
      await exited;
    }
    const started = performance.now();
    // No waitMs: before the fix this retried until an infinite deadline.
    await assert.rejects(redlock.acquire('other'), (error: unknown) => {
      assert.ok(error instanceof QuorumNotReachedError);
      assert.ok(error instanceof LockBackendError, 'one backend error class');
      assert.equal(error.votes.filter((v) => v.vote === 'error').length, 2);
      return true;
    });
    assert.ok(performance.now() - started < 2500, 'failed fast');
    // A release that could not reach the nodes is reported, not swallowed.
    await assert.rejects(held.release(), LockBackendError);
  });

  it('withLock keeps the caller’s error when release fails too, with the release error attached', async () => {
    const mutex = new KeyedMutex();
    const failingRelease: Locker = {
      acquire: async (key, options) => {
        const handle = await mutex.acquire(key, options);
        return {
          ...handle,
          key: handle.key,
          token: handle.token,
          validUntil: handle.validUntil,
          signal: handle.signal,
          extend: (ms?: number) => handle.extend(ms),
          release: async () => {
            await handle.release();
            throw new Error('release failed');
          },
        } satisfies LockHandle;
      },
      tryAcquire: (key, options) => mutex.tryAcquire(key, options),
    };
    const mine = new Error('the work failed');
    await assert.rejects(
      withLock(failingRelease, 'k', () => Promise.reject(mine)),
      (error: unknown) => {
        assert.equal(error, mine);
        assert.match(String((error as { releaseError?: unknown }).releaseError), /release failed/);
        return true;
      },
    );
    // Without an error of the caller's, the release failure is the error.
    await assert.rejects(
      withLock(failingRelease, 'k', () => Promise.resolve(1)),
      /release failed/,
    );
  });

  it('one acquire-timeout class: the row-lock LockTimeoutError is a LockAcquireTimeoutError', () => {
    const error = new LockTimeoutError('"products" FOR UPDATE NOWAIT', 0, undefined);
    assert.ok(error instanceof LockAcquireTimeoutError);
    assert.equal(error.code, 'RACEGUARD_LOCK_TIMEOUT');
  });
});
