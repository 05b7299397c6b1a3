/**
 * Redlock on five real redis-server processes, with nodes killed (-9),
 * paused (SIGSTOP) and restarted empty while clients contend for the lock.
 */
import { contend } from '../helpers/contend.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { withLock } from '../../packages/raceguard/src/core/lock.js';
import { QuorumNotReachedError, Redlock } from '../../packages/raceguard/src/redis/redlock.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';

async function connect(url: string): Promise<Redis> {
  const client = new Redis(url, {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    lazyConnect: true,
    retryStrategy: () => 20,
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

describe('Redlock on five nodes', () => {
  // Each test gets five fresh nodes: no test depends on what an earlier one killed.
  let servers: RedisServer[];
  let clients: Redis[];

  beforeEach(async () => {
    servers = await Promise.all(Array.from({ length: 5 }, () => startRedisServer()));
    clients = await Promise.all(servers.map((s) => connect(s.url)));
  });
  afterEach(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
  });

  /** Kill node `i` and start an empty one on its port; resolves once its client is connected again. */
  async function restartEmpty(i: number): Promise<void> {
    const old = servers[i] as RedisServer;
    if (old.process.exitCode === null && old.process.signalCode === null) {
      const exited = once(old.process, 'exit');
      old.process.kill('SIGKILL');
      await exited;
    }
    servers[i] = await startRedisServer({ port: old.port });
    const client = clients[i] as Redis;
    if (client.status !== 'ready') await once(client, 'ready');
  }

  // Tests without a paused node give a loaded CI machine a second to answer;
  // the one that pauses a node keeps its wait per attempt short.
  const newRedlock = (callTimeoutMs = 1000) =>
    new Redlock({
      clients,
      prefix: `rl${randomBytes(3).toString('hex')}:`,
      callTimeoutMs,
      pollMs: 20,
    });

  /** Contend for one lock; a read-gap-write on shared state detects any overlap. */
  async function contendOn(redlock: Redlock, workers: number, onProgress?: (done: number) => void) {
    const { peak, value } = await contend(
      redlock,
      'resource',
      workers,
      { ttlMs: 2000, waitMs: 30_000 },
      onProgress,
    );
    return { peak, value };
  }

  it('excludes concurrent holders and serves everyone', async () => {
    const result = await contendOn(newRedlock(), 40);
    assert.deepEqual(result, { peak: 1, value: 40 });
  });

  it('keeps working, and exclusive, when a node is paused (SIGSTOP)', async () => {
    const paused = servers[4] as RedisServer;
    paused.process.kill('SIGSTOP');
    try {
      const result = await contendOn(newRedlock(250), 20);
      assert.deepEqual(result, { peak: 1, value: 20 });
    } finally {
      paused.process.kill('SIGCONT');
    }
  });

  it('survives kill -9 of one and then a second node mid-run', async () => {
    const redlock = newRedlock();
    const result = await contendOn(redlock, 60, (done) => {
      if (done === 15) servers[0]?.process.kill('SIGKILL');
      if (done === 35) servers[1]?.process.kill('SIGKILL');
    });
    assert.deepEqual(result, { peak: 1, value: 60 });
    // Three of five nodes left: still a majority, still a lock.
    const lock = await redlock.acquire('after-kills', { ttlMs: 1000 });
    await lock.release();
  });

  it('with three nodes down, fails with the per-node votes', async () => {
    for (const node of [0, 1]) servers[node]?.process.kill('SIGKILL');
    const third = servers[2] as RedisServer;
    third.process.kill('SIGSTOP');
    try {
      const error = await newRedlock(250)
        .acquire('no-quorum', { ttlMs: 1000, waitMs: 600 })
        .catch((e: unknown) => e);
      assert.ok(error instanceof QuorumNotReachedError, String(error));
      assert.equal(error.code, 'RACEGUARD_QUORUM_NOT_REACHED');
      assert.equal(error.quorum, 3);
      assert.deepEqual(
        error.votes.map((v) => v.vote),
        ['error', 'error', 'error', 'granted', 'granted'],
      );
    } finally {
      third.process.kill('SIGCONT');
    }
  });

  it('a node restarted empty (no persistence) does not hand out a held lock, as long as a majority still remembers it', async () => {
    const redlock = newRedlock();
    const holder = await redlock.acquire('restart', { ttlMs: 5000 });
    // Two of five nodes forget it: three still remember.
    await restartEmpty(3);
    await restartEmpty(4);
    assert.equal(await redlock.tryAcquire('restart', { ttlMs: 5000 }), undefined);
    await holder.release();
    const next = await redlock.acquire('restart', { ttlMs: 1000, waitMs: 1000 });
    await next.release();
  });

  it('fenceCounter "shared" keeps one counter key per node', async () => {
    const prefix = `rls${randomBytes(3).toString('hex')}:`;
    const redlock = new Redlock({ clients, prefix, callTimeoutMs: 1000, fenceCounter: 'shared' });
    const tokens: bigint[] = [];
    for (const name of ['a', 'b', 'c', 'a', 'b', 'c']) {
      await withLock(
        redlock,
        name,
        (lock) => {
          tokens.push(lock.token);
          return Promise.resolve();
        },
        { ttlMs: 2000 },
      );
    }
    assert.ok(tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as bigint)));
    for (const client of clients) {
      assert.deepEqual(await client.keys(`${prefix}fence*`), [`${prefix}fence`]);
    }
  });

  it('rejects bad options', () => {
    assert.throws(() => new Redlock({ clients: [] }), /non-empty array/);
    assert.throws(() => new Redlock({ clients: [{} as never] }), /clients\[0\]/);
    assert.throws(() => new Redlock({ clients, driftFactor: 0.9 }), /driftFactor/);
    assert.throws(
      () => new Redlock({ clients, fenceCounter: 'none' as never }),
      /options\.fenceCounter/,
    );
  });
});
