/**
 * The lock contract as a test suite: every backend runs these same cases on
 * its real server. A case a backend cannot meet by design (strict token
 * order for Redlock, leases for session locks) is declared in its
 * `Backend` description, not skipped silently.
 */
import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockLostError,
  LockNotOwnerError,
  UnsupportedLockOptionError,
  type AcquireOptions,
  type Locker,
} from '../../packages/raceguard/src/core/lock.js';
import { contend, increasing } from '../helpers/contend.js';

/** How a test makes the backend's next round trips hang, and lets them go again. */
export interface Stall {
  begin(): Promise<void>;
  end(): Promise<void>;
}

/** A backend under the contract. */
export interface Backend {
  readonly name: string;
  /** Set up servers (once). */
  start(): Promise<void>;
  /** A new locker with connections of its own (a "process" of its own). */
  locker(): Promise<Locker>;
  /** Construct a locker with extra options (to check refusals); throws what the constructor throws. */
  construct(extra: Record<string, unknown>): Promise<unknown>;
  /** Whether it takes `ttlMs` (a lease); session and in-process locks without one refuse it. */
  readonly lease: 'lease' | 'none' | 'local';
  /** Shortest lease it accepts. */
  readonly minTtlMs?: number;
  /** Whether a lease can only be renewed to the length it was granted with (etcd). */
  readonly fixedLeaseLength?: boolean;
  /** Whether tokens strictly increase in grant order (Redlock: best effort only). */
  readonly orderedTokens: boolean;
  /** Makes round trips hang (a paused server, a locked table, an exhausted pool). */
  readonly stall?: Stall;
  /** Kills the server (SIGKILL) and, where the test can, starts it again. Runs last. */
  readonly crash?: { kill(): Promise<void>; restart?(): Promise<void> };
  stop(): Promise<void>;
}

let keys = 0;
const freshKey = (what: string): string => `${what}-${process.pid}-${++keys}`;

/** Time from `from` to when `promise` settles, and how it settled. */
async function timed(promise: Promise<unknown>, from = performance.now()) {
  try {
    await promise;
    return { ok: true as const, ms: performance.now() - from, error: undefined };
  } catch (error) {
    return { ok: false as const, ms: performance.now() - from, error };
  }
}

/**
 * The event loop's own lateness while `work` runs: how much later than asked
 * a 5 ms timer fired, at worst. On a loaded two-core machine the loop can
 * lag by a hundred milliseconds or more; a deadline is judged against the
 * clock the process actually had, so a broken deadline (late by a whole
 * round trip or more) still fails.
 */
async function withLag<T>(work: () => Promise<T>): Promise<{ value: T; lagMs: number }> {
  let lagMs = 0;
  let expected = performance.now() + 5;
  const timer = setInterval(() => {
    lagMs = Math.max(lagMs, performance.now() - expected);
    expected = performance.now() + 5;
  }, 5);
  try {
    return { value: await work(), lagMs };
  } finally {
    clearInterval(timer);
  }
}

/** The wait a free key should take at most once the late grants are gone (far below any lease). */
const FREE_AGAIN_MS = 5000;

export function lockContract(backend: Backend): void {
  // A broken deadline shows as a failure, not a hung suite.
  describe(`lock contract: ${backend.name}`, { timeout: 120_000 }, () => {
    let a: Locker;
    let b: Locker;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

    before(async () => {
      process.on('unhandledRejection', onUnhandled);
      await backend.start();
      [a, b] = await Promise.all([backend.locker(), backend.locker()]);
    });
    after(async () => {
      await backend.stop();
      process.off('unhandledRejection', onUnhandled);
    });

    it('mutual exclusion across two lockers; tokens increase in grant order', async () => {
      const { peak, value, tokens } = await contend([a, b], freshKey('mx'), 30, {
        waitMs: 20_000,
      });
      assert.deepEqual({ peak, value }, { peak: 1, value: 30 });
      if (backend.orderedTokens) assert.ok(increasing(tokens), tokens.join(' '));
    });

    it('waitMs: 0 and tryAcquire answer at once on a held key; double release is harmless', async () => {
      const key = freshKey('try');
      const held = await a.acquire(key);
      assert.equal(await b.tryAcquire(key), undefined);
      const refused = await timed(b.acquire(key, { waitMs: 0 }));
      assert.ok(refused.error instanceof LockAcquireTimeoutError, String(refused.error));
      assert.equal(refused.error.code, 'RACEGUARD_LOCK_ACQUIRE_TIMEOUT');
      await held.release();
      await held.release();
      const next = await b.tryAcquire(key);
      assert.ok(next, 'free after release');
      await next.release();
    });

    it('a former holder can neither release nor extend the next holder’s lock', async () => {
      const key = freshKey('owner');
      const first = await a.acquire(key);
      await first.release();
      const second = await b.acquire(key, { waitMs: 5000 });
      await first.release();
      await assert.rejects(first.extend(), LockNotOwnerError);
      assert.equal(await a.tryAcquire(key), undefined, 'still held by the second holder');
      await second.release();
    });

    if (backend.lease === 'lease') {
      it('a former holder whose lease expired cannot release or extend the next holder’s lock (the call reaches the server)', async () => {
        const key = freshKey('expired-owner');
        const ttlMs = Math.max(backend.minTtlMs ?? 100, 300);
        const first = await a.acquire(key, { ttlMs });
        // Never released: its lease runs out and the second holder takes the key.
        const second = await b.acquire(key, { ttlMs: 30_000, waitMs: ttlMs + 10_000 });
        await first.release().catch(() => undefined); // its first release: goes to the server
        await assert.rejects(first.extend(), LockNotOwnerError);
        assert.equal(await a.tryAcquire(key), undefined, 'still held by the second holder');
        await second.release();
      });
    }

    it('extend with a bad lease rejects (never throws), on every handle', async () => {
      const held = await a.acquire(freshKey('extend-bad'));
      try {
        let answer: Promise<void> | undefined;
        assert.doesNotThrow(() => (answer = held.extend('x' as never)));
        await assert.rejects(answer as Promise<void>, InvalidArgumentError);
      } finally {
        await held.release();
      }
    });

    it('extend: renews a lease, or checks a lease-less lock is still held', async () => {
      const key = freshKey('extend');
      if (backend.lease === 'none') {
        const held = await a.acquire(key);
        await held.extend();
        await assert.rejects(held.extend(5000), InvalidArgumentError);
        await held.release();
        await assert.rejects(held.extend(), LockNotOwnerError);
        return;
      }
      const ttlMs = Math.max(backend.minTtlMs ?? 100, 2000);
      const held = await a.acquire(key, { ttlMs });
      const before = held.validUntil;
      await new Promise((r) => setTimeout(r, 30));
      await held.extend();
      assert.ok(held.validUntil >= before + 20, `renewed: ${held.validUntil} vs ${before}`);
      if (backend.fixedLeaseLength === true) {
        await assert.rejects(held.extend(ttlMs * 5), UnsupportedLockOptionError);
      } else {
        await held.extend(ttlMs * 5);
        assert.ok(held.validUntil > before + ttlMs, `${held.validUntil} vs ${before}`);
      }
      // Two extends at once do not overlap and leave one renewal chain.
      await Promise.all([held.extend(), held.extend()]);
      assert.equal(held.signal.aborted, false);
      await held.release();
      await assert.rejects(held.extend(), LockNotOwnerError);
    });

    it('lease options it cannot honour are refused, at construction and per call', async () => {
      const key = freshKey('options');
      await assert.rejects(
        async () => backend.construct({ bogusOption: 1 }),
        UnsupportedLockOptionError,
      );
      if (backend.lease === 'none') {
        await assert.rejects(
          async () => backend.construct({ ttlMs: 5000 }),
          UnsupportedLockOptionError,
        );
        await assert.rejects(a.acquire(key, { ttlMs: 5000 }), (e: unknown) => {
          assert.ok(e instanceof UnsupportedLockOptionError);
          assert.equal(e.code, 'RACEGUARD_UNSUPPORTED_OPTION');
          return true;
        });
        await assert.rejects(a.acquire(key, { autoExtend: true }), UnsupportedLockOptionError);
      } else if (backend.lease === 'lease') {
        const min = backend.minTtlMs ?? 100;
        await assert.rejects(a.acquire(key, { ttlMs: min - 1 }), InvalidArgumentError);
        await assert.rejects(async () => backend.construct({ ttlMs: 5 }), InvalidArgumentError);
        // A huge lease is fine, and released like any other.
        const held = await a.acquire(key, { ttlMs: 864_000_000 });
        await held.release();
        assert.ok(await a.tryAcquire(key).then((h) => h?.release().then(() => true)));
      }
      await assert.rejects(a.acquire(key, { waitMs: -1 }), InvalidArgumentError);
      await assert.rejects(a.acquire('', {}), InvalidArgumentError);
    });

    it('200 aborts at random moments each reject within 100 ms, and no key stays held', async () => {
      const key = freshKey('aborts');
      const holder = await a.acquire(key);
      const { value: results, lagMs } = await withLag(() =>
        Promise.all(
          Array.from({ length: 200 }, async (_, i) => {
            const controller = new AbortController();
            const locker = i % 2 === 0 ? a : b;
            const waiting = locker.acquire(key, { signal: controller.signal, waitMs: 30_000 });
            // Some abort before the first round trip answers, some while waiting.
            await new Promise((r) => setTimeout(r, Math.random() * 40));
            const abortedAt = performance.now();
            controller.abort(new Error(`abort ${i}`));
            const outcome = await timed(waiting, abortedAt);
            return { ...outcome, listeners: getEventListeners(controller.signal, 'abort').length };
          }),
        ),
      );
      for (const r of results) {
        assert.ok(r.error instanceof AbortedError, String(r.error));
        assert.ok(
          r.ms < 100 + lagMs,
          `rejected ${r.ms.toFixed(0)} ms after the abort (event loop lag ${lagMs.toFixed(0)} ms)`,
        );
        assert.equal(r.listeners, 0, 'no abort listener left behind');
      }
      await holder.release();
      // Nobody's abandoned grant keeps it: free at once, long before any lease.
      const next = await b.acquire(key, { waitMs: FREE_AGAIN_MS });
      assert.equal(await a.tryAcquire(key), undefined, 'held by the new holder');
      await next.release();
    });

    it('no listener or timer leak after 1,000 acquire/abort cycles', async () => {
      const key = freshKey('leak');
      const holder = await a.acquire(key);
      const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      for (let i = 0; i < 1000; i++) {
        const controller = new AbortController();
        const waiting = b.acquire(key, { signal: controller.signal, waitMs: 60_000 });
        if (i % 2 === 0) controller.abort(new Error('now'));
        else queueMicrotask(() => controller.abort(new Error('soon')));
        await assert.rejects(waiting, AbortedError);
        assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
      }
      // Calls abandoned by the aborts may still be in flight (with their node timeouts,
      // for Redlock): wait for them to come back, then nothing may be left.
      for (let i = 0; i < 200 && timers() > before + 5; i++)
        await new Promise((r) => setImmediate(r));
      for (let i = 0; i < 100 && timers() > before + 5; i++)
        await new Promise((r) => setTimeout(r, 20));
      // Allow for the drivers' own timers (reconnects, keepalives), not one per cycle.
      assert.ok(timers() <= before + 5, `timers ${before} -> ${timers()}`);
      await holder.release();
    });

    if (backend.stall !== undefined) {
      const stall = backend.stall;
      it('deadlines hold while a round trip is stalled; a grant that lands late is released', async () => {
        const key = freshKey('stalled');
        const other = freshKey('stalled-abort');
        const lease: AcquireOptions = backend.lease === 'lease' ? { ttlMs: 30_000 } : {};
        await stall.begin();
        let ended = false;
        try {
          // The lag monitor runs from before the calls: a call that blocks the loop counts as lag.
          const { value: outcomes, lagMs } = await withLag(async () => {
            const bounded = timed(a.acquire(key, { ...lease, waitMs: 200 }));
            const controller = new AbortController();
            let abortedAt = Number.NaN;
            const aborted = timed(b.acquire(other, { ...lease, signal: controller.signal })).then(
              (outcome) => ({ ...outcome, sinceAbort: performance.now() - abortedAt }),
            );
            setTimeout(() => {
              abortedAt = performance.now();
              controller.abort(new Error('give up'));
            }, 100);
            return { waited: await bounded, gaveUp: await aborted };
          });
          const { waited, gaveUp } = outcomes;
          assert.ok(waited.error instanceof LockAcquireTimeoutError, String(waited.error));
          assert.ok(
            waited.ms < 300 + lagMs,
            `waitMs 200 rejected after ${waited.ms.toFixed(0)} ms (event loop lag ${lagMs.toFixed(0)} ms)`,
          );
          assert.ok(gaveUp.error instanceof AbortedError, String(gaveUp.error));
          assert.ok(
            gaveUp.sinceAbort < 100 + lagMs,
            `rejected ${gaveUp.sinceAbort.toFixed(0)} ms after the abort (event loop lag ${lagMs.toFixed(0)} ms)`,
          );
          await stall.end();
          ended = true;
          // Whatever the stalled calls were granted when the server went on is handed back:
          // both keys are free long before their 30 s lease.
          for (const k of [key, other]) {
            const next = await timed(
              b.acquire(k, { waitMs: FREE_AGAIN_MS }).then((h) => h.release()),
            );
            assert.ok(next.ok, `${k} free again: ${String(next.error)}`);
          }
        } finally {
          if (!ended) await stall.end();
        }
      });
    }

    if (backend.stall !== undefined && backend.lease === 'lease') {
      const stall = backend.stall;
      it('the backend stalls while the lock is held: the holder is told by the end of its lease, extend() and release() answer by then, the next holder never overlaps', async () => {
        const ttlMs = Math.max(backend.minTtlMs ?? 100, 1500);
        const key = freshKey('held-stall');
        const manualKey = freshKey('held-stall-extend');
        const lost: unknown[] = [];
        const watched = await a.acquire(key, {
          ttlMs,
          autoExtend: true,
          onLost: (error) => lost.push(error),
        });
        const manual = await a.acquire(manualKey, { ttlMs });
        await stall.begin();
        let ended = false;
        try {
          const { value, lagMs } = await withLag(async () => {
            const extended = timed(manual.extend());
            const abortedAt = await Promise.race([
              once(watched.signal, 'abort').then(() => performance.now()),
              new Promise<number>((resolve) => setTimeout(() => resolve(Number.NaN), ttlMs + 5000)),
            ]);
            return { abortedAt, extended: await extended, extendStart: performance.now() };
          });
          assert.ok(!Number.isNaN(value.abortedAt), 'the holder of a stalled lease was never told');
          assert.ok(
            value.abortedAt <= watched.validUntil + 100 + lagMs,
            `told ${(value.abortedAt - watched.validUntil).toFixed(0)} ms after validUntil`,
          );
          assert.ok(watched.signal.reason instanceof LockLostError);
          assert.equal(lost.length, 1, 'onLost called once');
          assert.ok(
            value.extended.error instanceof LockLostError ||
              value.extended.error instanceof LockNotOwnerError,
            `extend() during the stall: ${String(value.extended.error)}`,
          );
          assert.ok(
            value.extended.ms <= ttlMs + 200 + lagMs,
            `extend() answered after ${value.extended.ms.toFixed(0)} ms`,
          );
          const released = await timed(manual.release());
          assert.ok(
            released.ms < 200 + lagMs,
            `release() answered after ${released.ms.toFixed(0)} ms`,
          );
          await stall.end();
          ended = true;
          // Whoever takes the key next finds the first holder told.
          const next = await b.acquire(key, { ttlMs, waitMs: 30_000 });
          assert.ok(watched.signal.aborted, 'two holders whose signals are not aborted');
          await next.release();
          await watched.release().catch(() => undefined);
        } finally {
          if (!ended) await stall.end();
        }
      });
    }

    if (backend.crash !== undefined) {
      const crash = backend.crash;
      it('a server killed mid-hold: the holder learns it, waiters get a typed error, never a hang', async () => {
        const key = freshKey('crash');
        const lease: AcquireOptions =
          backend.lease === 'lease' ? { ttlMs: Math.max(backend.minTtlMs ?? 100, 1000) } : {};
        const holder = await a.acquire(key, { ...lease, autoExtend: backend.lease === 'lease' });
        await crash.kill();
        const waited = await timed(b.acquire(key, { ...lease, waitMs: 1000 }));
        assert.ok(
          waited.error instanceof LockBackendError ||
            waited.error instanceof LockAcquireTimeoutError,
          String(waited.error),
        );
        assert.ok(waited.ms < 3000, `the waiter answered after ${waited.ms.toFixed(0)} ms`);
        // The holder's lease cannot be renewed: its signal aborts once the lease is over.
        if (!holder.signal.aborted)
          await Promise.race([
            once(holder.signal, 'abort'),
            new Promise((_, reject) =>
              setTimeout(() => reject(new Error('the holder was never told')), 10_000),
            ),
          ]);
        assert.ok(holder.signal.reason instanceof LockLostError);
        await holder.release().catch(() => undefined);
        if (crash.restart !== undefined) {
          await crash.restart();
          const after = await b.acquire(freshKey('after-restart'), { ...lease, waitMs: 10_000 });
          await after.release();
        }
      });
    }

    it('no unhandled rejection in the whole suite', () => {
      assert.deepEqual(unhandled, []);
    });
  });
}
