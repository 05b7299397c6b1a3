/**
 * Kleppmann's scenario, on real processes: a holder is frozen (SIGSTOP) past
 * its lease, another client takes the lock and writes, then the frozen
 * holder wakes up and writes with its old token. With fencing the stale
 * write must be refused every time; without fencing it overwrites newer data
 * (which proves the test can fail).
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fencedSet } from '../../src/redis/fenced-set.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

const TTL_MS = 80;
const BATCH = 20;

function ask<T>(child: ChildProcess, message: unknown): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (reply) => resolve(reply as T));
    child.send(message as object);
  });
}

describe('fencing against a paused lock holder (SIGSTOP past the lease)', () => {
  let redis: TestRedis;
  let holder: ChildProcess;
  const prefix = `f${randomBytes(3).toString('hex')}:`;

  before(async () => {
    redis = await openTestRedis();
    holder = fork('test/helpers/lock-holder.ts', [redis.server.url, prefix], {
      execArgv: ['--import', 'tsx'],
    });
    await new Promise((resolve) => holder.once('message', resolve));
  });
  after(async () => {
    holder.kill('SIGKILL');
    await redis.close();
  });

  async function trialBatch(
    batch: number,
    fenced: boolean,
  ): Promise<{ staleRefused: number; violations: number }> {
    const keys = Array.from({ length: BATCH }, (_, i) => `${fenced ? 'f' : 'u'}${batch}-${i}`);
    const { tokens } = await ask<{ tokens: string[] }>(holder, {
      cmd: 'acquire',
      keys,
      ttlMs: TTL_MS,
    });
    holder.kill('SIGSTOP');
    try {
      // The paused holder's leases run out; a second client takes every lock and writes.
      const locks = redis.newLock({ prefix });
      for (const key of keys) {
        const lock = await locks.acquire(key, { ttlMs: 5000, waitMs: 2000 });
        assert.ok(lock.token > BigInt(tokens[keys.indexOf(key)] as string));
        if (fenced) await fencedSet(redis.client, `resource:${key}`, 'new-holder', lock.token);
        else await redis.client.hset(`resource:${key}`, 'value', 'new-holder');
        await lock.release();
      }
    } finally {
      holder.kill('SIGCONT');
    }
    const { results } = await ask<{ results: string[] }>(holder, {
      cmd: 'write',
      fenced,
      items: keys.map((key, i) => ({ key, token: tokens[i] })),
    });
    let violations = 0;
    for (const key of keys) {
      if ((await redis.client.hget(`resource:${key}`, 'value')) !== 'new-holder') violations++;
    }
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
    await delay(0);
    assert.equal(violations, BATCH);
  });
});
