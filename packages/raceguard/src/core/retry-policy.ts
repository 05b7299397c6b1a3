import type { RetryEvent, RetryOptions } from './retry.js';

/**
 * How a PostgreSQL operation retries what it may retry (serialization
 * failures and deadlocks for {@link transaction}, lost version races for
 * {@link optimisticUpdate}): capped exponential backoff with full jitter.
 */
/** The option names of {@link RetryPolicy}, for the option checks of the functions that take one. */
export const RETRY_POLICY_OPTIONS: readonly string[] = [
  'maxAttempts',
  'baseDelayMs',
  'maxDelayMs',
  'deadlineMs',
  'signal',
  'onRetry',
  'random',
];

export interface RetryPolicy {
  /**
   * Total attempts, the first included.
   * @default 5
   */
  readonly maxAttempts?: number;
  /**
   * Backoff cap of the first retry in ms; doubles with each retry (full jitter).
   * @default 5
   */
  readonly baseDelayMs?: number;
  /**
   * Largest backoff between attempts, in ms.
   * @default 250
   */
  readonly maxDelayMs?: number;
  /** Stop retrying when the next attempt could not start within this many ms of the first. Unlimited when unset. */
  readonly deadlineMs?: number;
  /** Cancels waiting between attempts and starting new ones. */
  readonly signal?: AbortSignal;
  /** Called before each retry with the failure that caused it; for logs and metrics. */
  readonly onRetry?: (event: RetryEvent) => void;
  /** Uniform random source in [0, 1) for the jitter. @default Math.random */
  readonly random?: () => number;
}

/** The core retry options for a policy, with the PostgreSQL defaults filled in. */
export function retryOptionsOf(
  policy: RetryPolicy,
  isRetryable: (error: unknown) => boolean,
  operation?: string,
): RetryOptions {
  return {
    ...(operation !== undefined && { operation }),
    maxAttempts: policy.maxAttempts ?? 5,
    baseDelayMs: policy.baseDelayMs ?? 5,
    maxDelayMs: policy.maxDelayMs ?? 250,
    isRetryable,
    ...(policy.deadlineMs !== undefined && { deadlineMs: policy.deadlineMs }),
    ...(policy.signal !== undefined && { signal: policy.signal }),
    ...(policy.onRetry !== undefined && { onRetry: policy.onRetry }),
    ...(policy.random !== undefined && { random: policy.random }),
  };
}
