import { LockLoss } from '../core/lock-loss.js';
import { longTimer } from '../core/deadline.js';
import { AbortedError, InvalidArgumentError, rejection } from '../core/errors.js';
import {
  LockAcquireTimeoutError,
  LockNotOwnerError,
  checkAcquire,
  type LeaseSupport,
  type AcquireOptions,
  type LockHandle,
  type Locker,
  checkOptionNames,
  tryOnce,
} from '../core/lock.js';
import { assertPlainObject, assertPositiveInteger } from '../core/validate.js';

/** Options of {@link KeyedSemaphore.acquire}: the common ones plus a weight. */
export interface SemaphoreAcquireOptions extends AcquireOptions {
  /**
   * Permits this holder takes.
   * @default 1
   */
  readonly weight?: number;
}

interface Waiter {
  readonly weight: number;
  grant(): void;
}

interface Entry {
  used: number;
  readonly queue: Waiter[];
}

/** What the in-process locks do with a lease: the caller's choice, any length from 1 ms. */
const LOCAL_LEASE: LeaseSupport = {
  backend: 'KeyedSemaphore',
  ttlMs: undefined,
  optional: true,
  minTtlMs: 1,
};

/** The acquire options, checked as every locker checks them, and the weight. */
function validate(key: unknown, options: SemaphoreAcquireOptions, permits: number): number {
  checkAcquire(key, options, LOCAL_LEASE);
  const { weight = 1 } = options;
  assertPositiveInteger('options.weight', weight);
  if (weight > permits) {
    throw new InvalidArgumentError(
      'options.weight',
      `at most the semaphore's ${permits} permit(s)`,
      weight,
    );
  }
  return weight;
}

/**
 * In-process keyed semaphore: up to `permits` concurrent holders per key,
 * granted strictly first-come first-served (a heavy waiter at the head is
 * never overtaken, so it cannot starve). The `Map<string, Mutex>` people
 * write by hand, done right:
 *
 * - an entry exists only while its key has holders or waiters (no leak);
 * - a released permit is handed to the next waiter directly, so no newcomer
 *   can barge in between, and nothing is granted twice;
 * - each waiter has its own `signal` and `waitMs`; one that gives up leaves
 *   the queue, and one granted after its signal fired is released at once;
 * - every grant gets a fencing token greater than all earlier ones;
 * - with `ttlMs`, a holder that overruns its lease loses the lock: its
 *   `signal` aborts, `onLost` is called, and the next waiter is served.
 *
 * @example
 * ```ts
 * const limits = new KeyedSemaphore({ permits: 3 });
 * await withLock(limits, `tenant:${tenantId}`, () => callSlowPartner()); // at most 3 per tenant
 * ```
 */
export class KeyedSemaphore implements Locker {
  readonly permits: number;
  readonly #entries = new Map<string, Entry>();
  /** One counter for all keys, so tokens stay increasing per key even after an entry is dropped. */
  #lastToken = 0n;

  constructor(options: { readonly permits: number }) {
    assertPlainObject('options', options);
    checkOptionNames('KeyedSemaphore', options, ['permits']);
    assertPositiveInteger('options.permits', options.permits);
    this.permits = options.permits;
  }

  /** Keys that currently have holders or waiters. */
  get size(): number {
    return this.#entries.size;
  }

  /** Holders' permits in use and waiters queued for `key`. */
  stats(key: string): { readonly used: number; readonly waiting: number } {
    const entry = this.#entries.get(key);
    return { used: entry?.used ?? 0, waiting: entry?.queue.length ?? 0 };
  }

  /**
   * Wait for `weight` permits on `key`.
   *
   * @example
   * ```ts
   * await using permit = await semaphore.acquire('exports', { waitMs: 5000 });
   * ```
   */
  async acquire(key: string, options: SemaphoreAcquireOptions = {}): Promise<LockHandle> {
    const weight = validate(key, options, this.permits);
    const { signal, waitMs = Number.POSITIVE_INFINITY } = options;
    if (signal?.aborted === true) throw new AbortedError(signal.reason);
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { used: 0, queue: [] };
      this.#entries.set(key, entry);
    }
    if (entry.queue.length === 0 && entry.used + weight <= this.permits) {
      return this.#grant(key, entry, weight, options);
    }
    if (waitMs === 0) {
      this.#dropIfIdle(key, entry);
      throw new LockAcquireTimeoutError(
        key,
        0,
        `${entry.used} of ${this.permits} permit(s) in use`,
      );
    }
    const queued = entry;
    return new Promise<LockHandle>((resolve, reject) => {
      const started = performance.now();
      let cancelTimer: (() => void) | undefined;
      const leave = (error: Error): void => {
        const index = queued.queue.indexOf(waiter);
        if (index >= 0) queued.queue.splice(index, 1);
        cleanup();
        reject(error);
        // The waiter that left may have been blocking the head of the queue.
        this.#drain(key, queued);
      };
      const onAbort = (): void => leave(new AbortedError(signal?.reason));
      const cleanup = (): void => {
        cancelTimer?.();
        signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        weight,
        grant: () => {
          cleanup();
          resolve(this.#grant(key, queued, weight, options));
        },
      };
      queued.queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (Number.isFinite(waitMs)) {
        cancelTimer = longTimer(
          () =>
            leave(
              new LockAcquireTimeoutError(
                key,
                performance.now() - started,
                `${queued.used} of ${this.permits} permit(s) in use, ${queued.queue.length} waiting`,
              ),
            ),
          waitMs,
        );
      }
    });
  }

  /**
   * Take `weight` permits on `key` only if they are free now and nobody is queued.
   *
   * @example
   * ```ts
   * const lock = await mutex.tryAcquire('nightly-job');
   * if (!lock) return; // already running
   * ```
   */
  tryAcquire(
    key: string,
    options: Omit<SemaphoreAcquireOptions, 'waitMs'> = {},
  ): Promise<LockHandle | undefined> {
    return tryOnce(() => this.acquire(key, { ...options, waitMs: 0 }));
  }

  #grant(key: string, entry: Entry, weight: number, options: SemaphoreAcquireOptions): LockHandle {
    entry.used += weight;
    return new LocalHandle(key, ++this.#lastToken, options, () => {
      entry.used -= weight;
      this.#drain(key, entry);
    });
  }

  #drain(key: string, entry: Entry): void {
    let head = entry.queue[0];
    while (head !== undefined && entry.used + head.weight <= this.permits) {
      entry.queue.shift();
      head.grant();
      head = entry.queue[0];
    }
    this.#dropIfIdle(key, entry);
  }

  #dropIfIdle(key: string, entry: Entry): void {
    if (entry.used === 0 && entry.queue.length === 0 && this.#entries.get(key) === entry)
      this.#entries.delete(key);
  }
}

/** A grant of {@link KeyedSemaphore}: a class, so a grant allocates one object rather than a set of closures. */
class LocalHandle implements LockHandle {
  validUntil = Number.POSITIVE_INFINITY;
  #expiry: NodeJS.Timeout | undefined;
  readonly #loss: LockLoss;

  constructor(
    readonly key: string,
    readonly token: bigint,
    readonly options: SemaphoreAcquireOptions,
    readonly giveBack: () => void,
  ) {
    this.#loss = new LockLoss(key, options.onLost, 'KeyedSemaphore');
    if (options.ttlMs !== undefined && options.autoExtend !== true) this.#lease(options.ttlMs);
  }

  get signal(): AbortSignal {
    return this.#loss.signal;
  }

  get #held(): boolean {
    return this.#loss.held;
  }

  #lease(ttlMs: number): void {
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    this.validUntil = performance.now() + ttlMs;
    this.#expiry = setTimeout(() => this.#expire(), ttlMs);
    this.#expiry.unref();
  }

  #expire(): void {
    if (!this.#held) return;
    this.#loss.lose('expired');
    this.#end();
  }

  #end(): void {
    this.#loss.end();
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    this.giveBack();
  }

  extend(ttlMs = this.options.ttlMs): Promise<void> {
    if (!this.#held) return Promise.reject(new LockNotOwnerError(this.key));
    if (ttlMs !== undefined && this.options.autoExtend !== true) {
      try {
        assertPositiveInteger('ttlMs', ttlMs);
      } catch (error) {
        return rejection(error);
      }
      this.#lease(ttlMs);
    }
    return Promise.resolve();
  }

  release(): Promise<void> {
    if (this.#held) this.#end();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
