import { sleep, throwIfAborted } from './abort.js';
import { failureCode, publishRetry } from './events.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { RetryExhaustedError } from './errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertNonNegativeFinite,
  assertPositiveInteger,
} from './validate.js';

/** What {@link RetryOptions.onRetry} is told before each retry. */
export interface RetryEvent {
  /** The attempt that just failed (1-based). */
  readonly attempt: number;
  /** Its failure. */
  readonly error: unknown;
  /** How long the loop sleeps before the next attempt. */
  readonly delayMs: number;
}

/** Options of {@link retry}. */
export interface RetryOptions extends BackoffOptions {
  /**
   * Total attempts, the first included.
   * @default 5
   */
  readonly maxAttempts?: number;
  /**
   * Give up when the next attempt could not start within this many
   * milliseconds of the first attempt's start (monotonic clock). Unlimited when unset.
   */
  readonly deadlineMs?: number;
  /** Aborts the wait between attempts and prevents new attempts. */
  readonly signal?: AbortSignal;
  /**
   * Decides whether a failure is worth another attempt. Failures it rejects
   * are rethrown unchanged at once.
   * @default every failure is retryable
   */
  readonly isRetryable?: (error: unknown) => boolean;
  /** Called before each retry's sleep; for logs and metrics. Must not throw. */
  readonly onRetry?: (event: RetryEvent) => void;
  /**
   * Names the operation in the `raceguard:retry` diagnostics channel
   * (`transaction`, `optimistic-update`); unnamed retries publish nothing.
   */
  readonly operation?: string;
}

/** Context handed to each attempt. */
export interface AttemptContext {
  /** 1-based attempt number. */
  readonly attempt: number;
  /** The caller's signal, if any. */
  readonly signal: AbortSignal | undefined;
}

/**
 * Run `fn` until it succeeds, retrying retryable failures with capped
 * exponential backoff and full jitter. Throws {@link RetryExhaustedError}
 * (with the last failure as `cause`) when attempts or the deadline run out,
 * {@link AbortedError} when the signal fires, and any non-retryable failure
 * unchanged.
 *
 * @example
 * ```ts
 * const row = await retry(() => tryReserve(seatId), {
 *   maxAttempts: 4,
 *   isRetryable: (e) => e instanceof SeatBusyError,
 * });
 * ```
 */
export async function retry<T>(
  fn: (context: AttemptContext) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  assertFunction('fn', fn);
  const { maxAttempts = 5, deadlineMs, signal, isRetryable = () => true, onRetry } = options;
  assertPositiveInteger('options.maxAttempts', maxAttempts);
  if (deadlineMs !== undefined) assertNonNegativeFinite('options.deadlineMs', deadlineMs);
  assertAbortSignal('options.signal', signal);
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal);
    try {
      return await fn({ attempt, signal });
    } catch (error) {
      if (!isRetryable(error)) throw error;
      const elapsedMs = performance.now() - started;
      if (attempt >= maxAttempts) {
        report(options.operation, 'exhausted', attempt, error);
        throw new RetryExhaustedError(attempt, elapsedMs, 'max-attempts', error);
      }
      const delayMs = backoffDelay(attempt, options);
      if (deadlineMs !== undefined && elapsedMs + delayMs >= deadlineMs) {
        report(options.operation, 'exhausted', attempt, error);
        throw new RetryExhaustedError(attempt, elapsedMs, 'deadline', error);
      }
      report(options.operation, 'retry', attempt, error);
      onRetry?.({ attempt, error, delayMs });
      await sleep(delayMs, signal);
    }
  }
}

/** Publish a retry event of a named operation (unnamed retries publish nothing). */
function report(
  operation: string | undefined,
  event: 'retry' | 'exhausted',
  attempt: number,
  error: unknown,
): void {
  if (operation !== undefined)
    publishRetry(() => ({ event, operation, attempt, code: failureCode(error) }));
}
