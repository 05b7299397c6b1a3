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
import { createLazyAbort, type LazyAbort } from './abort.js';
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
  return new LeaseHandle(options);
}

/** One object per grant (no closures per grant: grants are a hot path). */
class LeaseHandle implements LockHandle {
  readonly key: string;
  readonly token: bigint;
  validUntil: number;
  readonly #options: LeaseHandleOptions;
  #held = true;
  #released: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #renewal: Promise<void> | undefined;
  #loss: LazyAbort | undefined;

  constructor(options: LeaseHandleOptions) {
    this.key = options.key;
    this.token = options.token;
    this.validUntil = options.validUntil;
    this.#options = options;
    this.#schedule();
  }

  get signal(): AbortSignal {
    return (this.#loss ??= createLazyAbort()).signal;
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #lose(reason: LockLossReason, cause?: unknown): void {
    if (!this.#held) return;
    this.#held = false;
    this.#stopTimer();
    const lost = new LockLostError(this.key, reason, cause);
    (this.#loss ??= createLazyAbort()).abort(lost);
    try {
      this.#options.acquireOptions.onLost?.(lost);
    } catch {
      // Loss is reported, never thrown from a timer.
    }
  }

  #schedule(): void {
    if (!this.#held || this.#released !== undefined) return;
    const { ttlMs, acquireOptions } = this.#options;
    if (acquireOptions.autoExtend !== true) {
      this.#timer = setTimeout(
        () => this.#lose('expired'),
        Math.max(0, this.validUntil - performance.now()),
      );
    } else {
      this.#timer = setTimeout(() => this.#renewInBackground(), ttlMs / 3);
    }
    this.#timer.unref();
  }

  #renewInBackground(): void {
    this.#timer = undefined;
    // A renewal coming due after the lease means the event loop stalled: the lease may have been taken.
    if (performance.now() >= this.validUntil) return this.#lose('stall');
    this.#renewal = this.#options.renew(this.#options.ttlMs).then(
      (until) => {
        if (until === undefined) return this.#lose('expired');
        this.validUntil = until;
        this.#schedule();
      },
      (error: unknown) =>
        performance.now() < this.validUntil ? this.#schedule() : this.#lose('extend-failed', error),
    );
  }

  async extend(leaseMs = this.#options.ttlMs): Promise<void> {
    assertPositiveInteger('ttlMs', leaseMs);
    if (!this.#held || this.#released !== undefined) throw new LockNotOwnerError(this.key);
    this.#stopTimer();
    await this.#renewal;
    const until = await this.#options.renew(leaseMs);
    if (until === undefined) {
      this.#lose('expired');
      throw new LockNotOwnerError(this.key);
    }
    this.validUntil = until;
    this.#stopTimer();
    this.#schedule();
  }

  release(): Promise<void> {
    return (this.#released ??= (async () => {
      this.#held = false;
      this.#stopTimer();
      await this.#renewal;
      await this.#options.release();
    })());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
