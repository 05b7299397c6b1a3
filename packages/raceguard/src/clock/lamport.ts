/**
 * Lamport's logical clock ("Time, Clocks, and the Ordering of Events in a
 * Distributed System", CACM 1978): a counter that every event increments
 * and every received message moves past the sender's, so that if a
 * happened before b, a's time is lower than b's.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { ClockOverflowError } from './errors.js';

const OPTIONS = new Set(['start']);

/**
 * A Lamport clock.
 *
 * @example
 * ```ts
 * const clock = new LamportClock();
 * const stamp = clock.send(); // attach to the message
 * clock.receive(incomingStamp); // on receipt
 * ```
 */
export class LamportClock {
  #time: number;

  constructor(options: { readonly start?: number } = {}) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTIONS);
    const start = options.start ?? 0;
    assertTime('options.start', start);
    this.#time = start;
  }

  /** The current time. */
  get time(): number {
    return this.#time;
  }

  /** A local event: the next time. */
  tick(): number {
    if (this.#time >= Number.MAX_SAFE_INTEGER) {
      throw new ClockOverflowError('the Lamport time', Number.MAX_SAFE_INTEGER);
    }
    return ++this.#time;
  }

  /** The time to attach to an outgoing message (a local event). */
  send(): number {
    return this.tick();
  }

  /** An incoming message stamped `remote`: the clock moves past it. */
  receive(remote: number): number {
    assertTime('remote', remote);
    if (remote >= Number.MAX_SAFE_INTEGER) {
      throw new ClockOverflowError('the Lamport time', Number.MAX_SAFE_INTEGER);
    }
    this.#time = Math.max(this.#time, remote);
    return this.tick();
  }
}

function assertTime(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(name, 'a non-negative safe integer', value);
  }
}
