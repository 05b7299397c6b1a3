import { assertNonNegativeFinite } from './validate.js';
import { InvalidArgumentError } from './errors.js';

/** Options of {@link backoffDelay}. */
export interface BackoffOptions {
  /**
   * Delay cap for the first retry; each later retry doubles the cap.
   * @default 10
   */
  readonly baseDelayMs?: number;
  /**
   * The cap never grows past this.
   * @default 1000
   */
  readonly maxDelayMs?: number;
  /**
   * Source of uniform random numbers in [0, 1). Inject one to make delays reproducible.
   * @default Math.random
   */
  readonly random?: () => number;
}

/**
 * Capped exponential backoff with full jitter: a delay drawn uniformly from
 * `[0, min(maxDelayMs, baseDelayMs * 2^(retry-1)))`. Full jitter spreads
 * retrying clients apart so they stop colliding (see "Exponential Backoff And
 * Jitter", AWS Architecture Blog, 2015).
 *
 * @param retry - 1 for the first retry, 2 for the second, ...
 *
 * @example
 * ```ts
 * const ms = backoffDelay(3, { baseDelayMs: 10, maxDelayMs: 500 }); // in [0, 40)
 * ```
 */
export function backoffDelay(retry: number, options: BackoffOptions = {}): number {
  const { baseDelayMs = 10, maxDelayMs = 1000, random = Math.random } = options;
  if (!Number.isSafeInteger(retry) || retry < 1) {
    throw new InvalidArgumentError('retry', 'a positive safe integer', retry);
  }
  assertNonNegativeFinite('options.baseDelayMs', baseDelayMs);
  assertNonNegativeFinite('options.maxDelayMs', maxDelayMs);
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(retry - 1, 52));
  return random() * cap;
}
