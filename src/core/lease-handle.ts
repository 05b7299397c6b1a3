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
 *   `validUntil` passes. The timer is armed only once someone can observe
 *   the loss (`onLost` given, or `signal` read): most grants are released
 *   long before their lease ends, and a timer per grant is measurable on the
 *   hot path. `extend()` checks the lease itself.
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
  /** Whether the expiry or renewal timer runs (see {@link createLeaseHandle}). */
  #watched: boolean;

  constructor(options: LeaseHandleOptions) {
    this.key = options.key;
    this.token = options.token;
    this.validUntil = options.validUntil;
    this.#options = options;
    const { autoExtend, onLost } = options.acquireOptions;
    this.#watched = autoExtend === true || onLost !== undefined;
    if (this.#watched) this.#schedule();
  }

  get signal(): AbortSignal {
    const loss = (this.#loss ??= createLazyAbort());
    if (!this.#watched) {
      this.#watched = true;
      if (performance.now() >= this.validUntil) this.#lose('expired');
      else this.#schedule();
    }
    return loss.signal;
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
    // Without a timer nobody has marked a lapsed lease lost yet.
    if (this.#held && performance.now() >= this.validUntil) this.#lose('expired');
    if (!this.#held) throw new LockNotOwnerError(this.key);
    const until = await this.#options.renew(leaseMs);
    if (until === undefined) {
      this.#lose('expired');
      throw new LockNotOwnerError(this.key);
    }
    this.validUntil = until;
    this.#stopTimer();
    if (this.#watched) this.#schedule();
  }

  release(): Promise<void> {
    if (this.#released !== undefined) return this.#released;
    this.#held = false;
    this.#stopTimer();
    const renewal = this.#renewal;
    // No renewal in flight (the common case): release at once, without an extra tick.
    this.#released =
      renewal === undefined ? this.#options.release() : renewal.then(() => this.#options.release());
    return this.#released;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
