/**
 * Kleppmann's scenario, on real processes: a holder is frozen (SIGSTOP) past
 * its lease, another client takes the lock and writes, then the frozen
 * holder wakes up and writes with its old token. With fencing the stale
 * write must be refused every time; without fencing it overwrites newer data
 * (which proves the test can fail). Run for the Redis lock with `fencedSet`
 * and for the PostgreSQL lease lock with `fencedUpdate`.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Locker } from '../../packages/raceguard/src/core/lock.js';
import { fencedUpdate } from '../../packages/raceguard/src/postgres/fenced-update.js';
import {
  createLockTables,
  PostgresLeaseLock,
} from '../../packages/raceguard/src/postgres/lease-lock.js';
import { fencedSet } from '../../packages/raceguard/src/redis/fenced-set.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

const TTL_MS = 100;
const BATCH = 20;

function ask<T>(child: ChildProcess, message: unknown): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (reply) => resolve(reply as T));
    child.send(message as object);
  });
}

interface Backend {
  /** The second client's lock, on the same namespace as the frozen holder's. */
  readonly locks: Locker;
  write(key: string, token: bigint, fenced: boolean): Promise<void>;
  read(key: string): Promise<string | undefined>;
  readonly holder: ChildProcess;
  close(): Promise<void>;
}

async function redisBackend(): Promise<Backend> {
  const redis: TestRedis = await openTestRedis();
  const prefix = `f${randomBytes(3).toString('hex')}:`;
  const holder = fork('test/helpers/lock-holder.ts', ['redis', redis.server.url, prefix], {
    execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
  });
  await new Promise((resolve) => holder.once('message', resolve));
  return {
    locks: redis.newLock({ prefix }),
    write: (key, token, fenced) =>
      fenced
        ? fencedSet(redis.client, `resource:${key}`, 'new-holder', token)
        : redis.client.hset(`resource:${key}`, 'value', 'new-holder').then(() => undefined),
    read: async (key) => (await redis.client.hget(`resource:${key}`, 'value')) ?? undefined,
    holder,
    async close() {
      holder.kill('SIGKILL');
      await redis.close();
    },
  };
}

async function postgresBackend(): Promise<Backend> {
  const db: TestDatabase = await openTestDatabase(5);
  await createLockTables(db.pool);
  await db.pool.query(
    'CREATE TABLE resources (key text PRIMARY KEY, value text, fence_token bigint)',
  );
  const holder = fork('test/helpers/lock-holder.ts', ['postgres', db.url, db.schema], {
    execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
  });
  await new Promise((resolve) => holder.once('message', resolve));
  return {
    locks: new PostgresLeaseLock({ client: db.pool, pollMs: 5 }),
    async write(key, token, fenced) {
      await db.pool.query('INSERT INTO resources (key) VALUES ($1) ON CONFLICT DO NOTHING', [key]);
      if (fenced)
        await fencedUpdate(db.pool, {
          table: 'resources',
          key: { key },
          set: { value: 'new-holder' },
          token,
        });
      else await db.pool.query(`UPDATE resources SET value = 'new-holder' WHERE key = $1`, [key]);
    },
    read: async (key) =>
      (await db.pool.query('SELECT value FROM resources WHERE key = $1', [key])).rows[0]?.value,
    holder,
    async close() {
      holder.kill('SIGKILL');
      await db.close();
    },
  };
}

for (const [name, open] of [
  ['Redis lock + fencedSet', redisBackend],
  ['PostgreSQL lease lock + fencedUpdate', postgresBackend],
] as const) {
  describe(`fencing against a paused lock holder (SIGSTOP past the lease): ${name}`, () => {
    let backend: Backend;
    before(async () => {
      backend = await open();
    });
    after(() => backend.close());

    async function trialBatch(
      batch: number,
      fenced: boolean,
    ): Promise<{ staleRefused: number; violations: number }> {
      const keys = Array.from({ length: BATCH }, (_, i) => `${fenced ? 'f' : 'u'}${batch}-${i}`);
      const { tokens } = await ask<{ tokens: string[] }>(backend.holder, {
        cmd: 'acquire',
        keys,
        ttlMs: TTL_MS,
      });
      backend.holder.kill('SIGSTOP');
      try {
        // The paused holder's leases run out; a second client takes every lock and writes.
        for (const [i, key] of keys.entries()) {
          const lock = await backend.locks.acquire(key, { ttlMs: 5000, waitMs: 2000 });
          assert.ok(lock.token > BigInt(tokens[i] as string));
          await backend.write(key, lock.token, fenced);
          await lock.release();
        }
      } finally {
        backend.holder.kill('SIGCONT');
      }
      const { results } = await ask<{ results: string[] }>(backend.holder, {
        cmd: 'write',
        fenced,
        items: keys.map((key, i) => ({ key, token: tokens[i] })),
      });
      let violations = 0;
      for (const key of keys) if ((await backend.read(key)) !== 'new-holder') violations++;
      return {
        staleRefused: results.filter((r) => r === 'RACEGUARD_STALE_TOKEN').length,
        violations,
      };
    }

    it('with fencing: 200 stale writes, 200 refused, 0 violations', async () => {
      let refused = 0;
      let violations = 0;
      for (let batch = 0; batch < 200 / BATCH; batch++) {
        const result = await trialBatch(batch, true);
        refused += result.staleRefused;
        violations += result.violations;
      }
      assert.equal(violations, 0);
      assert.equal(refused, 200);
    });

    it('without fencing: the stale holder overwrites the newer data', async () => {
      const { violations } = await trialBatch(0, false);
      assert.equal(violations, BATCH);
    });
  });
}
