/**
 * The client side of a lease, shared by every leased lock backend: the
 * expiry timer, the watchdog, loss reporting, and the ordering of renewals
 * against release.
 */
import { InvalidArgumentError } from './errors.js';
import { within } from './deadline.js';
import {
  LockLostError,
  LockNotOwnerError,
  MIN_LEASE_MS,
  type AcquireOptions,
  type LockHandle,
} from './lock.js';
import { LockLoss } from './lock-loss.js';

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
 * - An expiry timer aborts `signal` when `validUntil` passes, whatever is
 *   in flight: a renewal that has not answered by then does not keep the
 *   lock "held" (reason `extend-failed`). The timer is armed only once
 *   someone can observe the loss (`onLost` or `autoExtend` given, or
 *   `signal` read): most grants are released long before their lease ends,
 *   and a timer per grant is measurable on the hot path. `extend()` checks
 *   the lease itself.
 * - With `autoExtend`, renewals run at a third of the lease, one after the
 *   other (never overlapping); a renewal that comes due after `validUntil`
 *   means the event loop stalled and the lease may have been taken: the lock
 *   is reported lost (`stall`) instead of renewed.
 * - Every renewal (background or `extend()`) is raced against `validUntil`:
 *   one that answers after it is too late to count (the lock was reported
 *   lost, and another process may hold it); if it renewed the lease after
 *   all, the lease is handed back (released, owner-checked).
 * - Loss aborts `signal` and calls `onLost` once; nothing is ever thrown
 *   from a timer. Timers are `unref()`'d.
 * - Renewals never overlap, whoever asks: an `extend()` waits for the
 *   renewal in flight (background or another `extend()`).
 * - `release()` stops the timers, waits for a renewal in flight, then
 *   releases on the server; it answers by `validUntil` at the latest (a
 *   lease past its end is free on the server whether or not the release
 *   got through). It is idempotent and also frees a lease that was reported
 *   lost but may still be ours.
 */
export function createLeaseHandle(options: LeaseHandleOptions): LockHandle {
  return new LeaseHandle(options);
}

/** Raised inside a renewal that did not answer before the lease ended. */
class RenewalTooLateError extends Error {
  constructor() {
    super('the lock service did not answer the renewal before the lease ended');
  }
}

/** One object per grant (no closures per grant: grants are a hot path). */
class LeaseHandle implements LockHandle {
  readonly key: string;
  readonly token: bigint;
  validUntil: number;
  readonly #options: LeaseHandleOptions;
  readonly #loss: LockLoss;
  #released: Promise<void> | undefined;
  /** Fires at `validUntil` (when watched). */
  #expiry: NodeJS.Timeout | undefined;
  /** The next background renewal (with `autoExtend`). */
  #renewTimer: NodeJS.Timeout | undefined;
  /** The last renewal asked for (background or `extend()`), settled either way: the next one waits for it. */
  #renewal: Promise<void> | undefined;
  /** A renewal round trip is on the wire. */
  #renewing = false;
  /** Whether the expiry timer runs (see {@link createLeaseHandle}). */
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

  #stopTimers(): void {
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    if (this.#renewTimer !== undefined) clearTimeout(this.#renewTimer);
    this.#expiry = undefined;
    this.#renewTimer = undefined;
  }

  #lose(reason: 'expired' | 'stall' | 'extend-failed', cause?: unknown): void {
    this.#stopTimers();
    this.#loss.lose(reason, cause);
  }

  /** At `validUntil`: lost, and why (a renewal in flight did not answer in time). */
  #expire(): void {
    this.#expiry = undefined;
    if (this.#renewing) this.#lose('extend-failed', new RenewalTooLateError());
    else this.#lose('expired');
  }

  /** Arm the expiry timer at `validUntil` and, with `autoExtend` and nothing in flight, the next renewal. */
  #schedule(): void {
    this.#stopTimers();
    if (!this.#held || this.#released !== undefined) return;
    this.#expiry = setTimeout(
      () => this.#expire(),
      Math.max(0, this.validUntil - performance.now()),
    );
    this.#expiry.unref();
    if (this.#options.acquireOptions.autoExtend === true && !this.#renewing) {
      this.#renewTimer = setTimeout(() => this.#renewInBackground(), this.#options.ttlMs / 3);
      this.#renewTimer.unref();
    }
  }

  /**
   * One renewal on the server, raced against `validUntil`: resolves the new
   * `validUntil` or `undefined` (not ours any more); rejects with
   * {@link RenewalTooLateError} when the lease ends first (a renewal that
   * lands afterwards is handed back), or with the backend's error.
   */
  async #renewOnce(leaseMs: number): Promise<number | undefined> {
    this.#renewing = true;
    try {
      return await within(this.#options.renew(leaseMs), {
        deadline: this.validUntil,
        timeout: () => new RenewalTooLateError(),
        late: (until) => {
          if (until !== undefined) return this.#handBack();
        },
      });
    } finally {
      this.#renewing = false;
    }
  }

  /** A renewal landed after the lease was given up for lost: release it on the server. */
  #handBack(): Promise<void> {
    this.#loss.end();
    this.#stopTimers();
    this.#released ??= this.#options.release().catch(() => undefined);
    return this.#released;
  }

  /** Make `work` the last renewal asked for: the next one (and `release()`) waits for it. */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#renewal = work.then(
      () => undefined,
      () => undefined,
    );
    return work;
  }

  #renewInBackground(): void {
    this.#renewTimer = undefined;
    // A renewal coming due after the lease means the event loop stalled: the lease may have been taken.
    if (performance.now() >= this.validUntil) return this.#lose('stall');
    // An extend() is on the wire: it renews; the next third is armed after it.
    if (this.#renewing) return;
    void this.#track(
      this.#renewOnce(this.#options.ttlMs).then(
        (until) => {
          if (until === undefined) return this.#lose('expired');
          if (!this.#held || this.#released !== undefined) return;
          this.validUntil = until;
          this.#schedule();
        },
        (error: unknown) => {
          if (error instanceof RenewalTooLateError) return this.#lose('extend-failed', error);
          if (performance.now() >= this.validUntil) return this.#lose('extend-failed', error);
          // The renewal failed, the lease did not: try again at the next third.
          this.#schedule();
        },
      ),
    );
  }

  extend(leaseMs = this.#options.ttlMs): Promise<void> {
    // A function that returns a promise never throws: bad input rejects.
    if (!Number.isSafeInteger(leaseMs) || leaseMs <= 0)
      return Promise.reject(new InvalidArgumentError('ttlMs', 'a positive safe integer', leaseMs));
    if (leaseMs < MIN_LEASE_MS)
      return Promise.reject(
        new InvalidArgumentError('ttlMs', `at least ${MIN_LEASE_MS} ms`, leaseMs),
      );
    if (!this.#held || this.#released !== undefined)
      return Promise.reject(new LockNotOwnerError(this.key));
    if (this.#renewTimer !== undefined) clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    const previous = this.#renewal;
    return this.#track(
      (async () => {
        await previous;
        // Without a timer nobody has marked a lapsed lease lost yet.
        if (this.#held && performance.now() >= this.validUntil) this.#lose('expired');
        if (!this.#held || this.#released !== undefined) throw new LockNotOwnerError(this.key);
        let until: number | undefined;
        try {
          until = await this.#renewOnce(leaseMs);
        } catch (error) {
          if (error instanceof RenewalTooLateError) {
            this.#lose('extend-failed', error);
            throw new LockLostError(this.key, 'extend-failed', error);
          }
          // The renewal failed, the lease did not: its timers go on.
          if (this.#watched) this.#schedule();
          throw error;
        }
        if (until === undefined) {
          this.#lose('expired');
          throw new LockNotOwnerError(this.key);
        }
        if (!this.#held) throw new LockNotOwnerError(this.key);
        this.validUntil = until;
        if (this.#watched) this.#schedule();
      })(),
    );
  }

  release(): Promise<void> {
    if (this.#released !== undefined) return this.#released;
    this.#loss.end();
    this.#stopTimers();
    const renewal = this.#renewal;
    // No renewal in flight (the common case): release at once, without an extra tick.
    const released =
      renewal === undefined ? this.#options.release() : renewal.then(() => this.#options.release());
    // A stalled server: answer by the end of the lease (then free on the server anyway).
    this.#released = within(released, {
      deadline: this.validUntil,
      timeout: () => new Error('unreachable'),
    }).catch((error: unknown) => {
      if (performance.now() >= this.validUntil) return;
      throw error;
    });
    return this.#released;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
