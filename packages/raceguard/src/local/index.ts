/**
 * `raceguard/local`: in-process locks for shared mutable state.
 *
 * @packageDocumentation
 */
export { KeyedSemaphore, type SemaphoreAcquireOptions } from './keyed-semaphore.js';
export { KeyedMutex } from './keyed-mutex.js';
export { ReadWriteLock } from './read-write-lock.js';
