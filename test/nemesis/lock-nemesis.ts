/**
 * The lease lock's adversary: from one seed, workers on two processes'
 * worth of lockers contend for a few keys with random leases, waits,
 * holds, `autoExtend` and `extend()` calls, while faults are injected at
 * random moments for random lengths: the server paused (SIGSTOP), or one
 * locker's connection silenced (its renewals stall while the others go on,
 * as with a pool whose only connection is busy). Every grant is checked as it lands: no other holder of
 * the key may still have a `signal` that is not aborted (nor be within its
 * `validUntil`) unless it already released.
 */
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import type { LockHandle, Locker } from '../../packages/raceguard/src/core/lock.js';

export interface LockNemesisResult {
  readonly seed: number;
  readonly grants: number;
  readonly stalls: number;
  readonly violations: string[];
}

interface Holding {
  readonly worker: number;
  readonly handle: LockHandle;
  released: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `workers` workers for `durationMs` over `lockers` (each worker uses
 * one, round robin), pausing the server with `pause`/`resume`.
 */
export async function lockNemesis(options: {
  readonly seed: number;
  readonly lockers: readonly Locker[];
  /** Faults, each a pair: start it, end it (the server paused, one locker's connection silenced, ...). */
  readonly faults: readonly { readonly begin: () => void; readonly end: () => void }[];
  readonly durationMs: number;
  readonly workers?: number;
  readonly keys?: number;
  readonly prefix: string;
}): Promise<LockNemesisResult> {
  const random = createRandom(options.seed);
  const holders = new Map<string, Holding[]>();
  const violations: string[] = [];
  let grants = 0;
  let stalls = 0;
  const end = performance.now() + options.durationMs;
  const keyCount = options.keys ?? 2;

  const worker = async (id: number): Promise<void> => {
    const locker = options.lockers[id % options.lockers.length] as Locker;
    const r = createRandom(options.seed * 31 + id);
    while (performance.now() < end) {
      const key = `${options.prefix}${r.int(keyCount)}`;
      const ttlMs = 300 + r.int(500);
      const autoExtend = r.next() < 0.5;
      let handle: LockHandle;
      try {
        handle = await locker.acquire(key, { ttlMs, waitMs: 200 + r.int(1000), autoExtend });
      } catch {
        continue; // timed out or the backend failed: both are allowed
      }
      grants++;
      // The grant: every other holder of the key has released or been told.
      for (const other of holders.get(key) ?? []) {
        if (other.released) continue;
        if (!other.handle.signal.aborted) {
          violations.push(
            `${key}: worker ${id} granted token ${handle.token} while worker ${other.worker}'s token ${other.handle.token} was still held (signal not aborted)`,
          );
        }
      }
      const holding: Holding = { worker: id, handle, released: false };
      holders.set(key, [
        ...(holders.get(key) ?? []).filter((h) => !h.released && !h.handle.signal.aborted),
        holding,
      ]);
      const holdMs = r.int(ttlMs * 2);
      const until = performance.now() + holdMs;
      while (performance.now() < until && !handle.signal.aborted) {
        if (r.next() < 0.1) await handle.extend().catch(() => undefined);
        await sleep(Math.min(20 + r.int(60), Math.max(0, until - performance.now())));
      }
      holding.released = true;
      await handle.release().catch(() => undefined);
    }
  };

  const nemesis = async (): Promise<void> => {
    while (performance.now() < end) {
      await sleep(100 + random.int(700));
      if (performance.now() >= end) break;
      const fault = options.faults[
        random.int(options.faults.length)
      ] as (typeof options.faults)[number];
      fault.begin();
      stalls++;
      await sleep(50 + random.int(900));
      fault.end();
    }
  };

  await Promise.all([
    nemesis(),
    ...Array.from({ length: options.workers ?? 6 }, (_, i) => worker(i)),
  ]);
  return { seed: options.seed, grants, stalls, violations };
}
