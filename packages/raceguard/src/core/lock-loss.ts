/**
 * Loss reporting for every kind of lock handle (leased, session-bound,
 * in-process): once, as an aborted `signal` and an `onLost` call, never as
 * an exception thrown from a timer or an event handler.
 */
import { createLazyAbort, type LazyAbort } from './abort.js';
import { lockEventsWanted, publishLock } from './events.js';
import { LockLostError, type LockLossReason } from './lock.js';

/**
 * The held/lost state of one grant.
 *
 * @example
 * ```ts
 * const loss = new LockLoss(key, options.onLost);
 * client.on('end', () => loss.lose('backend'));
 * return { get signal() { return loss.signal; }, ... };
 * ```
 */
export class LockLoss {
  readonly #key: string;
  readonly #onLost: ((error: LockLostError) => void) | undefined;
  readonly #backend: string;
  #held = true;
  #abort: LazyAbort | undefined;

  /** `backend` names the locker in the `raceguard:lock` channel's `lost` events. */
  constructor(key: string, onLost?: (error: LockLostError) => void, backend = 'Locker') {
    this.#key = key;
    this.#onLost = onLost;
    this.#backend = backend;
  }

  /** Neither lost nor given up. */
  get held(): boolean {
    return this.#held;
  }

  /** Aborts with a {@link LockLostError} when the grant is lost (created on first read). */
  get signal(): AbortSignal {
    return (this.#abort ??= createLazyAbort()).signal;
  }

  /** Report the loss, once: abort `signal`, call `onLost`. Returns whether it was still held. */
  lose(reason: LockLossReason, cause?: unknown): boolean {
    if (!this.#held) return false;
    this.#held = false;
    const lost = new LockLostError(this.#key, reason, cause);
    (this.#abort ??= createLazyAbort()).abort(lost);
    if (lockEventsWanted())
      publishLock({ event: 'lost', backend: this.#backend, key: this.#key, reason });
    try {
      this.#onLost?.(lost);
    } catch {
      // Loss is reported, never thrown from a timer or an event handler.
    }
    return true;
  }

  /** Stop holding without a report (the holder released it). Returns whether it was held. */
  end(): boolean {
    const was = this.#held;
    this.#held = false;
    return was;
  }
}
