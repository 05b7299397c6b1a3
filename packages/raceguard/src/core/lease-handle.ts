/**
 * The client side of a lease, shared by every leased lock backend: the
 * expiry timer, the watchdog, loss reporting, and the ordering of renewals
 * against release.
 */
import { InvalidArgumentError } from './errors.js';
import { LockNotOwnerError, MIN_LEASE_MS, type AcquireOptions, type LockHandle } from './lock.js';
import { LockLoss } from './lock-loss.js';
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
  /** The locker's name in `lost` events of the `raceguard:lock` channel. */
  readonly backend?: string;
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
 * - Renewals never overlap, whoever asks: an `extend()` waits for the
 *   renewal in flight (background or another `extend()`), and there is
 *   only ever one timer.
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
  readonly #loss: LockLoss;
  #released: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The renewal in flight (background or `extend()`), settled either way. */
  #renewal: Promise<void> | undefined;
  /** Whether the expiry or renewal timer runs (see {@link createLeaseHandle}). */
  #watched: boolean;

  constructor(options: LeaseHandleOptions) {
    this.key = options.key;
    this.token = options.token;
    this.validUntil = options.validUntil;
    this.#options = options;
    const { autoExtend, onLost } = options.acquireOptions;
    this.#loss = new LockLoss(options.key, onLost, options.backend);
    this.#watched = autoExtend === true || onLost !== undefined;
    if (this.#watched) this.#schedule();
  }

  get signal(): AbortSignal {
    const signal = this.#loss.signal;
    if (!this.#watched) {
      this.#watched = true;
      if (performance.now() >= this.validUntil) this.#lose('expired');
      else this.#schedule();
    }
    return signal;
  }

  get #held(): boolean {
    return this.#loss.held;
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #lose(reason: 'expired' | 'stall' | 'extend-failed', cause?: unknown): void {
    this.#stopTimer();
    this.#loss.lose(reason, cause);
  }

  #schedule(): void {
    // One timer chain, however many renewals asked for the next one.
    this.#stopTimer();
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

  extend(leaseMs = this.#options.ttlMs): Promise<void> {
    assertPositiveInteger('ttlMs', leaseMs);
    if (leaseMs < MIN_LEASE_MS)
      return Promise.reject(
        new InvalidArgumentError('ttlMs', `at least ${MIN_LEASE_MS} ms`, leaseMs),
      );
    if (!this.#held || this.#released !== undefined)
      return Promise.reject(new LockNotOwnerError(this.key));
    this.#stopTimer();
    const previous = this.#renewal;
    const extension = (async () => {
      await previous;
      // Without a timer nobody has marked a lapsed lease lost yet.
      if (this.#held && performance.now() >= this.validUntil) this.#lose('expired');
      if (!this.#held || this.#released !== undefined) throw new LockNotOwnerError(this.key);
      let until: number | undefined;
      try {
        until = await this.#options.renew(leaseMs);
      } catch (error) {
        // The renewal failed, the lease did not: its timer goes on.
        if (this.#watched) this.#schedule();
        throw error;
      }
      if (until === undefined) {
        this.#lose('expired');
        throw new LockNotOwnerError(this.key);
      }
      this.validUntil = until;
      if (this.#watched) this.#schedule();
    })();
    this.#renewal = extension.then(
      () => undefined,
      () => undefined,
    );
    return extension;
  }

  release(): Promise<void> {
    if (this.#released !== undefined) return this.#released;
    this.#loss.end();
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
