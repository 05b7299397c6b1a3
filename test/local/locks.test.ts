import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  LockAcquireTimeoutError,
  LockLostError,
  LockNotOwnerError,
  withLock,
} from '../../packages/raceguard/src/core/lock.js';
import { KeyedMutex } from '../../packages/raceguard/src/local/keyed-mutex.js';
import { KeyedSemaphore } from '../../packages/raceguard/src/local/keyed-semaphore.js';
import { ReadWriteLock } from '../../packages/raceguard/src/local/read-write-lock.js';

describe('KeyedMutex', () => {
  it('100 concurrent read-await-write updates per key lose nothing (and lose some without it)', async () => {
    const mutex = new KeyedMutex();
    const state = new Map<string, number>();
    const increment = async (key: string) => {
      const value = state.get(key) ?? 0;
      await delay(Math.random() * 2);
      state.set(key, value + 1);
    };
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        withLock(mutex, `k${i % 4}`, () => increment(`k${i % 4}`)),
      ),
    );
    assert.deepEqual([...state.values()], [25, 25, 25, 25]);
    assert.equal(mutex.size, 0, 'no entry left behind');

    const unguarded = new Map<string, number>();
    const race = async () => {
      const value = unguarded.get('x') ?? 0;
      await delay(1);
      unguarded.set('x', value + 1);
    };
    await Promise.all(Array.from({ length: 100 }, race));
    assert.ok((unguarded.get('x') ?? 0) < 100, 'the control must lose updates');
  });

  it('grants strictly first come, first served, with increasing fencing tokens', async () => {
    const mutex = new KeyedMutex();
    const first = await mutex.acquire('k');
    const order: number[] = [];
    const tokens: bigint[] = [first.token];
    const waiters = Array.from({ length: 10 }, (_, i) =>
      mutex.acquire('k').then(async (handle) => {
        order.push(i);
        tokens.push(handle.token);
        await handle.release();
      }),
    );
    await first.release();
    await Promise.all(waiters);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as bigint)));
    // Tokens keep increasing after the entry was dropped and re-created.
    assert.equal(mutex.size, 0);
    const again = await mutex.acquire('k');
    assert.ok(again.token > (tokens.at(-1) as bigint));
    await again.release();
  });

  it('a waiter that times out or aborts leaves the queue; the next one is served', async () => {
    const mutex = new KeyedMutex();
    const holder = await mutex.acquire('k');
    const timedOut = mutex.acquire('k', { waitMs: 20 });
    const controller = new AbortController();
    const aborted = mutex.acquire('k', { signal: controller.signal });
    const patient = mutex.acquire('k');
    controller.abort(new Error('client went away'));
    await assert.rejects(
      aborted,
      (e) => e instanceof AbortedError && (e.cause as Error).message === 'client went away',
    );
    await assert.rejects(timedOut, LockAcquireTimeoutError);
    assert.equal(mutex.stats('k').waiting, 1);
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    await holder.release();
    const next = await patient;
    assert.equal(mutex.stats('k').used, 1);
    await next.release();
    assert.equal(mutex.size, 0);
  });

  it('removes its abort listener once granted', async () => {
    const mutex = new KeyedMutex();
    const holder = await mutex.acquire('k');
    const controller = new AbortController();
    const pending = mutex.acquire('k', { signal: controller.signal });
    assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
    await holder.release();
    const handle = await pending;
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    await handle.release();
  });

  it('release is idempotent and never grants twice', async () => {
    const mutex = new KeyedMutex();
    const a = await mutex.acquire('k');
    const b = mutex.acquire('k');
    const c = mutex.acquire('k');
    await a.release();
    await a.release();
    await a[Symbol.asyncDispose]();
    const bHandle = await b;
    assert.deepEqual(mutex.stats('k'), { used: 1, waiting: 1 });
    await bHandle.release();
    await (await c).release();
    assert.equal(mutex.size, 0);
  });

  it('a holder that overruns its lease loses the lock: signal aborts, onLost runs, the next waiter gets it', async () => {
    const mutex = new KeyedMutex();
    const lost: LockLostError[] = [];
    const holder = await mutex.acquire('k', { ttlMs: 30, onLost: (e) => lost.push(e) });
    assert.ok(Number.isFinite(holder.validUntil));
    const next = await mutex.acquire('k', { waitMs: 1000 });
    assert.equal(holder.signal.aborted, true);
    assert.ok(holder.signal.reason instanceof LockLostError);
    assert.equal(lost[0]?.reason, 'expired');
    assert.ok(next.token > holder.token);
    await assert.rejects(holder.extend(), LockNotOwnerError);
    await holder.release(); // a no-op: must not free the new holder's lock
    assert.equal(mutex.stats('k').used, 1);
    await next.release();
  });

  it('extend pushes the lease out', async () => {
    const mutex = new KeyedMutex();
    const holder = await mutex.acquire('k', { ttlMs: 300 });
    for (let i = 0; i < 4; i++) {
      await delay(100);
      await holder.extend();
    }
    assert.equal(holder.signal.aborted, false);
    await holder.release();
  });

  it('tryAcquire takes a free lock and declines a held one', async () => {
    const mutex = new KeyedMutex();
    const held = await mutex.tryAcquire('job');
    assert.ok(held);
    assert.equal(await mutex.tryAcquire('job'), undefined);
    await held.release();
    assert.equal(mutex.size, 0);
  });

  it('rejects bad input', async () => {
    const mutex = new KeyedMutex();
    await assert.rejects(mutex.acquire(''), InvalidArgumentError);
    await assert.rejects(mutex.acquire('k', { ttlMs: 0 }), /ttlMs/);
    await assert.rejects(mutex.acquire('k', { waitMs: Number.NaN }), /waitMs/);
    await assert.rejects(mutex.acquire('k', { weight: 2 }), /at most the semaphore's 1 permit/);
    await assert.rejects(mutex.acquire('k', { signal: AbortSignal.abort() }), AbortedError);
    // The checks every locker makes: a lease longer than a timer can run (it would fire at once
    // and report the lock lost), and an onLost that is not a function.
    await assert.rejects(mutex.acquire('k', { ttlMs: 2 ** 31 }), /at most 2147483647 ms/);
    await assert.rejects(mutex.acquire('k', { onLost: 'log' as never }), /options\.onLost/);
    const short = await mutex.acquire('k', { ttlMs: 5 });
    await short.release();
    assert.throws(() => new KeyedSemaphore({ permits: 0 }), InvalidArgumentError);
    assert.equal(mutex.size, 0);
  });
});

describe('KeyedSemaphore', () => {
  it('never admits more than `permits` holders per key', async () => {
    const semaphore = new KeyedSemaphore({ permits: 3 });
    let inside = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 50 }, () =>
        withLock(semaphore, 'partner-api', async () => {
          inside++;
          peak = Math.max(peak, inside);
          await delay(1);
          inside--;
        }),
      ),
    );
    assert.equal(peak, 3);
    assert.equal(semaphore.size, 0);
  });
});

describe('ReadWriteLock', () => {
  it('shares among readers, excludes writers, and does not starve a waiting writer', async () => {
    const rw = new ReadWriteLock();
    const r1 = await rw.acquireRead('cfg');
    const r2 = await rw.acquireRead('cfg');
    const events: string[] = [];
    const writer = rw.acquireWrite('cfg').then(async (w) => {
      events.push('write');
      await w.release();
    });
    const lateReader = rw.acquireRead('cfg').then(async (r) => {
      events.push('late read');
      await r.release();
    });
    await delay(5);
    assert.deepEqual(events, []);
    await r1.release();
    await r2.release();
    await Promise.all([writer, lateReader]);
    assert.deepEqual(events, ['write', 'late read']);
    assert.equal(
      await rw.writer.tryAcquire('cfg').then((h) => h?.release().then(() => true)),
      true,
    );
    assert.equal(rw.size, 0);
  });
});
