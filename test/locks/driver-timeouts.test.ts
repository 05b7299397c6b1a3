/**
 * Late grants when the driver gives up first (issue 27, defect 4): with the
 * client timeouts the docs recommend (ioredis `commandTimeout`, pg
 * `query_timeout`), a stalled grant or claim fails on the client but still
 * runs on the server once the stall ends. raceguard hands it back by owner,
 * so the key is free again long before its lease.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { LockBackendError } from '../../packages/raceguard/src/core/lock.js';
import { IdempotencyStoreError } from '../../packages/raceguard/src/idempotency/errors.js';
import { claimIdempotency } from '../../packages/raceguard/src/idempotency/idempotent.js';
import {
  PostgresLeaseLock,
  createLockTables,
} from '../../packages/raceguard/src/postgres/lease-lock.js';
import { RedisIdempotencyStore } from '../../packages/raceguard/src/redis/idempotency-store.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

/** SIGSTOP a process and wait until the kernel shows it stopped. */
async function pause(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  while (!/^\d+ \(.*\) [Tt] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('late grants after a driver timeout are handed back', { timeout: 60_000 }, () => {
  let redis: TestRedis;
  let db: TestDatabase;
  before(async () => {
    [redis, db] = await Promise.all([openTestRedis(), openTestDatabase(6)]);
  });
  after(async () => {
    await Promise.all([redis.close(), db.close()]);
  });

  it('Redis lock and Redis idempotency claim under ioredis commandTimeout', async () => {
    const timing = new Redis(redis.server.url, { commandTimeout: 150, maxRetriesPerRequest: 1 });
    timing.on('error', () => undefined);
    await timing.ping();
    const locks = new RedisLock({ client: timing, prefix: redis.prefix });
    const store = new RedisIdempotencyStore({ client: timing, prefix: `${redis.prefix}idem:` });
    // Scripts loaded first (a stalled EVALSHA of an unknown script would only fail with NOSCRIPT).
    await (await locks.acquire('warm-up')).release();
    const warm = await claimIdempotency(store, { scope: 's', key: 'warm-up', payload: {} });
    if (warm.kind === 'execute') await warm.abandon();
    const pid = redis.server.process.pid as number;
    await pause(pid);
    try {
      await assert.rejects(locks.acquire('stalled', { ttlMs: 30_000 }), LockBackendError);
      await assert.rejects(
        claimIdempotency(store, { scope: 's', key: 'k1', payload: { a: 1 }, leaseMs: 30_000 }),
        IdempotencyStoreError,
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // The stalled commands ran once Redis went on; the hand-backs ran after them.
    const other = new RedisLock({ client: redis.client, prefix: redis.prefix });
    const started = performance.now();
    const next = await other.acquire('stalled', { ttlMs: 5000, waitMs: 3000 });
    assert.ok(performance.now() - started < 3000);
    await next.release();
    const retried = await claimIdempotency(
      new RedisIdempotencyStore({ client: redis.client, prefix: `${redis.prefix}idem:` }),
      {
        scope: 's',
        key: 'k1',
        payload: { a: 1 },
        leaseMs: 30_000,
      },
    );
    assert.equal(retried.kind, 'execute', 'the retry runs, not "in progress" for the lease');
    if (retried.kind === 'execute') await retried.abandon();
    timing.disconnect();
  });

  it('PostgreSQL lease lock under pg query_timeout', async () => {
    const table = 'timeout_locks';
    await createLockTables(db.pool, { table });
    const timing = new pg.Pool({
      connectionString: db.url,
      options: `-c search_path=${db.schema}`,
      query_timeout: 200,
      max: 4,
    });
    timing.on('error', () => undefined);
    const locks = new PostgresLeaseLock({ client: timing, table });
    const blocker = await db.pool.connect();
    await blocker.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    try {
      await assert.rejects(locks.acquire('stalled', { ttlMs: 30_000 }));
    } finally {
      await blocker.query('COMMIT');
      blocker.release();
    }
    const other = new PostgresLeaseLock({ client: db.pool, table, pollMs: 20 });
    const next = await other.acquire('stalled', { ttlMs: 5000, waitMs: 8000 });
    await next.release();
    await timing.end();
  });
});
