/** Typed failures of idempotent execution, each with a stable `code`. */
import { RaceguardError, describeValue } from '../core/errors.js';

/** Why an idempotency key was refused. */
export type InvalidKeyReason =
  'missing' | 'empty' | 'too-long' | 'characters' | 'syntax' | 'multiple';

/**
 * An idempotency key is missing or malformed (HTTP 400). Nothing ran.
 *
 * @example
 * ```ts
 * parseIdempotencyKeyHeader('"unterminated'); // InvalidIdempotencyKeyError (reason "syntax")
 * ```
 */
export class InvalidIdempotencyKeyError extends RaceguardError {
  /** What is wrong with the key. */
  readonly reason: InvalidKeyReason;

  constructor(reason: InvalidKeyReason, detail: string, value: unknown) {
    super(
      'RACEGUARD_IDEMPOTENCY_KEY_INVALID',
      `idempotency key ${detail}, received ${describeValue(value)}`,
    );
    this.reason = reason;
  }
}

/**
 * Another request with the same key is still being processed (HTTP 409).
 * Nothing ran; retry after `retryAfterMs`.
 */
export class IdempotencyInFlightError extends RaceguardError {
  /** Milliseconds until the first request's lease runs out, an upper bound on a useful wait. */
  readonly retryAfterMs: number;

  constructor(retryAfterMs: number) {
    super(
      'RACEGUARD_IDEMPOTENCY_IN_FLIGHT',
      'a request with this idempotency key is still being processed',
    );
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The key was used before with a different payload (HTTP 422, or 400 in
 * Stripe mode). Nothing ran and the stored result is not returned.
 */
export class IdempotencyKeyReusedError extends RaceguardError {
  constructor() {
    super(
      'RACEGUARD_IDEMPOTENCY_KEY_REUSED',
      'this idempotency key was already used with a different request payload',
    );
  }
}

/**
 * The idempotency store failed (HTTP 503). When thrown before the handler
 * ran, nothing ran; `cause` holds the store's error.
 */
export class IdempotencyStoreError extends RaceguardError {
  /** The store operation that failed. */
  readonly operation: 'claim' | 'complete' | 'renew' | 'advance' | 'abandon';

  constructor(operation: IdempotencyStoreError['operation'], cause: unknown) {
    super(
      'RACEGUARD_IDEMPOTENCY_STORE_UNAVAILABLE',
      `the idempotency store failed to ${operation}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
    this.operation = operation;
  }
}

/**
 * The claim was lost while the handler ran (its lease ran out and another
 * request took over, or the record expired). The result was not stored.
 */
export class IdempotencyClaimLostError extends RaceguardError {
  /** The key whose claim was lost (when known), for the log that records a possible double execution. */
  readonly key: string | undefined;
  readonly scope: string | undefined;

  constructor(record: { readonly scope: string; readonly key: string } | undefined = undefined) {
    super(
      'RACEGUARD_IDEMPOTENCY_CLAIM_LOST',
      `the idempotency claim${record ? ` on key ${JSON.stringify(record.key)} (scope ${JSON.stringify(record.scope)})` : ''} was lost before the result could be stored (its lease ran out, so another request may have run it too)`,
    );
    this.key = record?.key;
    this.scope = record?.scope;
  }
}
