import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import zookeeper, { type Client } from 'node-zookeeper-client';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  LockAcquireTimeoutError,
  LockLostError,
  LockSessionLostError,
} from '../../packages/raceguard/src/core/lock.js';
import { ZooKeeperLock } from '../../packages/raceguard/src/zookeeper/zookeeper-lock.js';
import {
  startZooKeeperServer,
  type ZooKeeperServer,
} from '../../packages/raceguard/src/testing/zookeeper.js';
import { contend, increasing } from '../helpers/contend.js';
import { until } from '../helpers/until.js';

/** Block the event loop: no heartbeats leave this process, as in a long GC pause. */
function freeze(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

describe('ZooKeeperLock', () => {
  let zk: ZooKeeperServer;
  const clients: Client[] = [];
  const connect = async (sessionTimeout: number): Promise<Client> => {
    const client = zookeeper.createClient(zk.connectionString, {
      sessionTimeout,
      spinDelay: 100,
      retries: 2,
    });
    clients.push(client);
    await new Promise<void>((resolve) => {
      client.once('connected', () => resolve());
      client.connect();
    });
    return client;
  };
  before(async () => {
    zk = await startZooKeeperServer({ tickTimeMs: 200 });
  });
  /** Wait until `count` contenders are queued for `key` (the default prefix). */
  const queued = async (key: string, count: number): Promise<void> => {
    const observer = await connect(4000);
    await until(
      () =>
        new Promise<boolean>((resolve) =>
          observer.getChildren(`/raceguard/locks/${key}`, (error, children) =>
            resolve(!error && children.length >= count),
          ),
        ),
      `${count} contenders for ${key}`,
    );
  };
  after(async () => {
    for (const c of clients) c.close();
    await zk.stop();
  });

  it('two sessions, 40 concurrent read-gap-write sections: never overlapping, zxid tokens in grant order', async () => {
    const a = new ZooKeeperLock({ client: await connect(4000) });
    const b = new ZooKeeperLock({ client: await connect(4000) });
    const { peak, value, tokens } = await contend([b, a], 'ledger', 40);
    assert.deepEqual({ peak, value }, { peak: 1, value: 40 });
    assert.ok(increasing(tokens));
  });

  it('session expiry while holding frees the lock for the next contender and tells the holder', async () => {
    const holderLocks = new ZooKeeperLock({ client: await connect(800) });
    const waiterLocks = new ZooKeeperLock({ client: await connect(4000) });
    const lost: LockLostError[] = [];
    const holder = await holderLocks.acquire('expiring', { onLost: (e) => lost.push(e) });
    const waiting = waiterLocks.acquire('expiring', { waitMs: 20_000 });
    await queued('expiring', 2);
    freeze(2000); // past the holder's 800 ms session, within the waiter's 4 s
    const next = await waiting;
    assert.ok(next.token > holder.token);
    if (!holder.signal.aborted) await once(holder.signal, 'abort');
    assert.equal(holder.signal.aborted, true);
    assert.equal(lost[0]?.reason, 'expired');
    await holder.release(); // its node is gone already: a no-op
    await next.release();
  });

  it('session expiry while waiting fails the wait; the holder keeps the lock', async () => {
    const holderLocks = new ZooKeeperLock({ client: await connect(4000) });
    const waiterLocks = new ZooKeeperLock({ client: await connect(800) });
    const holder = await holderLocks.acquire('held');
    const waiting = waiterLocks.acquire('held', { waitMs: 20_000 });
    const settled = waiting.then(
      () => 'granted',
      (e: unknown) => e,
    );
    await queued('held', 2);
    freeze(2000);
    const outcome = await settled;
    assert.ok(outcome instanceof LockSessionLostError, String(outcome));
    assert.equal(holder.signal.aborted, false);
    await holder.release();
  });

  it('tryAcquire, timeouts and aborts leave no queue node behind', async () => {
    const client = await connect(4000);
    const locks = new ZooKeeperLock({ client });
    const holder = await locks.acquire('busy');
    assert.equal(await locks.tryAcquire('busy'), undefined);
    await assert.rejects(locks.acquire('busy', { waitMs: 100 }), LockAcquireTimeoutError);
    const controller = new AbortController();
    const waiting = locks.acquire('busy', { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('bye')), 100);
    await assert.rejects(waiting, AbortedError);
    const children = await new Promise<string[]>((resolve, reject) =>
      client.getChildren('/raceguard/locks/busy', (e, c) =>
        e ? reject(new Error(String(e))) : resolve(c),
      ),
    );
    assert.equal(children.length, 1, 'only the holder remains');
    await holder.release();
    await holder.release();
    const next = await locks.acquire('busy', { waitMs: 2000 });
    await next.release();
  });

  it('rejects bad input', async () => {
    assert.throws(() => new ZooKeeperLock({ client: {} as never }), /node-zookeeper-client/);
    const locks = new ZooKeeperLock({ client: await connect(4000) });
    await assert.rejects(locks.acquire('a/b'), InvalidArgumentError);
    await assert.rejects(locks.acquire(''), InvalidArgumentError);
  });
});
