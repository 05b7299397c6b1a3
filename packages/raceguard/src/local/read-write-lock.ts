import type { AcquireOptions, LockHandle, Locker } from '../core/lock.js';
import { KeyedSemaphore } from './keyed-semaphore.js';

/** Enough permits that any number of readers fit; a writer takes them all. */
const ALL = Number.MAX_SAFE_INTEGER;

/**
 * In-process keyed read-write lock: many readers or one writer per key.
 * Strict FIFO: a waiting writer holds back readers that arrive after it, so
 * writers never starve.
 *
 * @example
 * ```ts
 * const rw = new ReadWriteLock();
 * await withLock(rw.reader, 'config', async () => render(config));
 * await withLock(rw.writer, 'config', async () => { config = await reload(); });
 * ```
 */
export class ReadWriteLock {
  readonly #semaphore = new KeyedSemaphore({ permits: ALL });

  /** Shared acquisition, usable with `withLock`. */
  readonly reader: Locker = {
    acquire: (key, options) => this.acquireRead(key, options),
    tryAcquire: (key, options) => this.#semaphore.tryAcquire(key, { ...options, weight: 1 }),
  };

  /** Exclusive acquisition, usable with `withLock`. */
  readonly writer: Locker = {
    acquire: (key, options) => this.acquireWrite(key, options),
    tryAcquire: (key, options) => this.#semaphore.tryAcquire(key, { ...options, weight: ALL }),
  };

  /** Wait for shared access to `key`. */
  acquireRead(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.#semaphore.acquire(key, { ...options, weight: 1 });
  }

  /** Wait for exclusive access to `key`. */
  acquireWrite(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.#semaphore.acquire(key, { ...options, weight: ALL });
  }

  /** Keys with holders or waiters. */
  get size(): number {
    return this.#semaphore.size;
  }
}
