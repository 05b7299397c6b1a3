/**
 * The client side of a lease, shared by every leased lock backend: the
 * expiry timer, the watchdog, loss reporting, and the ordering of renewals
 * against release.
 */
import {
  LockLostError,
  LockNotOwnerError,
  type AcquireOptions,
  type LockHandle,
  type LockLossReason,
} from './lock.js';
import { assertPositiveInteger } from './validate.js';

/** What a backend provides to {@link createLeaseHandle}. */
export interface LeaseHandleOptions {
  readonly key: string;
  readonly token: bigint;
  /** Monotonic-clock time until which the lease is certainly held. */
  readonly validUntil: number;
  /** The lease length granted, used for renewals. */
  readonly ttlMs: number;
  /** The caller's acquire options (`autoExtend`, `onLost`). */
  readonly acquireOptions: AcquireOptions;
  /**
   * Renew the lease on the server for `leaseMs`. Resolves the new
   * `validUntil`, or `undefined` when this owner no longer holds it.
   */
  renew(leaseMs: number): Promise<number | undefined>;
  /** Give the lease up on the server, owner-checked. */
  release(): Promise<void>;
}

/**
 * Build a {@link LockHandle} over a server-side lease.
 *
 * - Without `autoExtend`, a timer aborts `signal` (reason `expired`) when
 *   `validUntil` passes.
 * - With `autoExtend`, renewals run at a third of the lease, one after the
 *   other (never overlapping); a renewal that comes due after `validUntil`
 *   means the event loop stalled and the lease may have been taken: the lock
 *   is reported lost (`stall`) instead of renewed.
 * - Loss aborts `signal` and calls `onLost` once; nothing is ever thrown
 *   from a timer. Timers are `unref()`'d.
 * - `release()` stops the timers, waits for a renewal in flight, then
 *   releases on the server; it is idempotent and also frees a lease that was
 *   reported lost but may still be ours.
 */
export function createLeaseHandle(options: LeaseHandleOptions): LockHandle {
  const { key, token, ttlMs, acquireOptions } = options;
  const controller = new AbortController();
  let validUntil = options.validUntil;
  let held = true;
  let released: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let renewal: Promise<void> | undefined;

  const stopTimer = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };

  const lose = (reason: LockLossReason, cause?: unknown): void => {
    if (!held) return;
    held = false;
    stopTimer();
    const lost = new LockLostError(key, reason, cause);
    controller.abort(lost);
    try {
      acquireOptions.onLost?.(lost);
    } catch {
      // Loss is reported, never thrown from a timer.
    }
  };

  const schedule = (): void => {
    if (!held || released !== undefined) return;
    if (acquireOptions.autoExtend !== true) {
      timer = setTimeout(() => lose('expired'), Math.max(0, validUntil - performance.now()));
    } else {
      timer = setTimeout(() => {
        timer = undefined;
        if (performance.now() >= validUntil) return lose('stall');
        renewal = options.renew(ttlMs).then(
          (until) => {
            if (until === undefined) return lose('expired');
            validUntil = until;
            schedule();
          },
          (error: unknown) =>
            performance.now() < validUntil ? schedule() : lose('extend-failed', error),
        );
      }, ttlMs / 3);
    }
    timer.unref();
  };
  schedule();

  const release = (): Promise<void> =>
    (released ??= (async () => {
      held = false;
      stopTimer();
      await renewal;
      await options.release();
    })());

  return {
    key,
    token,
    get validUntil() {
      return validUntil;
    },
    signal: controller.signal,
    async extend(leaseMs = ttlMs) {
      assertPositiveInteger('ttlMs', leaseMs);
      if (!held || released !== undefined) throw new LockNotOwnerError(key);
      stopTimer();
      await renewal;
      const until = await options.renew(leaseMs);
      if (until === undefined) {
        lose('expired');
        throw new LockNotOwnerError(key);
      }
      validUntil = until;
      stopTimer();
      schedule();
    },
    release,
    [Symbol.asyncDispose]: release,
  };
}
