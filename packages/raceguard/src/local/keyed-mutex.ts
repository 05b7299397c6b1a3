import { KeyedSemaphore } from './keyed-semaphore.js';

/**
 * In-process keyed mutex: one holder per key at a time, FIFO, per-waiter
 * `signal` and `waitMs`, fencing tokens, no map entry left behind. Guards
 * shared mutable state (a cache fill, a per-user counter, a rate-limiter
 * bucket) across the `await`s of concurrent requests in one process.
 *
 * @example
 * ```ts
 * const mutex = new KeyedMutex();
 * await withLock(mutex, `cart:${userId}`, async () => {
 *   const cart = await load(userId);
 *   await save(userId, addItem(cart, item));
 * });
 * ```
 */
export class KeyedMutex extends KeyedSemaphore {
  constructor() {
    super({ permits: 1 });
  }
}
