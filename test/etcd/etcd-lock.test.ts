import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  LockAcquireTimeoutError,
  LockSessionLostError,
} from '../../packages/raceguard/src/core/lock.js';
import { EtcdLock } from '../../packages/raceguard/src/etcd/etcd-lock.js';
import { startEtcdServer, type EtcdServer } from '../../packages/raceguard/src/testing/etcd.js';
import { contend, increasing } from '../helpers/contend.js';
import { until } from '../helpers/until.js';

describe('EtcdLock', () => {
  let etcd: EtcdServer;
  let client: Etcd3;
  before(async () => {
    etcd = await startEtcdServer();
    client = new Etcd3({ hosts: etcd.endpoint });
  });
  after(async () => {
    client.close();
    await etcd.stop();
  });
  const newLock = () => new EtcdLock({ client, prefix: `t${randomBytes(3).toString('hex')}/` });

  it('40 concurrent read-gap-write sections never overlap; tokens (create revisions) increase in grant order', async () => {
    const { peak, value, tokens } = await contend(newLock(), 'ledger', 40, {
      ttlMs: 5000,
      waitMs: 30_000,
    });
    assert.deepEqual({ peak, value }, { peak: 1, value: 40 });
    assert.ok(increasing(tokens));
  });

  it('session expiry while holding: the lease runs out, the holder is told, the next contender gets the lock', async () => {
    const locks = newLock();
    const holder = await locks.acquire('expiring', { ttlMs: 2000 });
    const started = performance.now();
    const next = await locks.acquire('expiring', { ttlMs: 5000, waitMs: 10_000 });
    assert.ok(performance.now() - started >= 1000, 'granted only after the lease expired');
    assert.equal(holder.signal.aborted, true);
    assert.ok(next.token > holder.token);
    await holder.release();
    assert.equal(
      await locks.tryAcquire('expiring'),
      undefined,
      'the stale release must not free the new holder',
    );
    await next.release();
  });

  it('session expiry while waiting: a waiter whose lease is revoked fails at once with a typed error', async () => {
    const prefix = `w${randomBytes(3).toString('hex')}/`;
    const locks = new EtcdLock({ client, prefix });
    const holder = await locks.acquire('held', { ttlMs: 10_000 });
    const waiting = locks.acquire('held', { ttlMs: 5000, waitMs: 20_000 });
    // Handled from the start: the rejection may come before assert.rejects is reached.
    waiting.catch(() => undefined);
    // The queue is `<prefix><key>/<lease id>`, oldest first: the second entry is the waiter's.
    const entries = () => client.getAll().prefix(`${prefix}held/`).sort('Create', 'Ascend').keys();
    await until(async () => (await entries()).length === 2, 'the waiter to queue');
    const queue = await entries();
    assert.equal(queue.length, 2);
    const waiterLease = (queue[1] as string).split('/').at(-1) as string;
    await client.leaseClient.leaseRevoke({ ID: waiterLease });
    const started = performance.now();
    await assert.rejects(
      waiting,
      (e) => e instanceof LockSessionLostError && /expired while waiting/.test(e.message),
    );
    assert.ok(performance.now() - started < 5000, 'noticed at once, not at the end of the wait');
    assert.equal(holder.signal.aborted, false);
    await holder.release();
  });

  it('tryAcquire, timeouts and aborts leave no queue entry behind', async () => {
    const locks = newLock();
    const holder = await locks.acquire('busy', { ttlMs: 10_000 });
    assert.equal(await locks.tryAcquire('busy'), undefined);
    await assert.rejects(locks.acquire('busy', { waitMs: 100 }), LockAcquireTimeoutError);
    const controller = new AbortController();
    const waiting = locks.acquire('busy', { signal: controller.signal });
    const started = performance.now();
    setTimeout(() => controller.abort(new Error('bye')), 100);
    await assert.rejects(waiting, AbortedError);
    assert.ok(performance.now() - started < 2000, 'an unbounded wait still stops at the abort');
    await holder.release();
    const next = await locks.acquire('busy', { waitMs: 2000 });
    await next.release();
  });

  it('rejects bad input', async () => {
    assert.throws(() => new EtcdLock({ client: {} as never }), /etcd3 client/);
    await assert.rejects(newLock().acquire(''), InvalidArgumentError);
  });
});
