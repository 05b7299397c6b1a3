/**
 * The contract between {@link idempotent} and a record store (memory,
 * PostgreSQL, Redis). Stores keep one record per (scope, key): its request
 * fingerprint, the current claim (owner and lease) and, once finished, the
 * serialised result.
 */

import { assertPlainObject, assertPositiveInteger } from '../core/validate.js';

/** Identifies one record. */
export interface RecordId {
  /** Caller identity (tenant, user); records of different scopes never meet. */
  readonly scope: string;
  /** The client's idempotency key. */
  readonly key: string;
}

/** A request to claim a key. */
export interface ClaimRequest extends RecordId {
  /** Fingerprint of the request; a different one for an existing record means key reuse. */
  readonly fingerprint: string;
  /** Random id of this attempt; every later write is checked against it. */
  readonly owner: string;
  /** How long the claim holds without renewal. */
  readonly leaseMs: number;
  /** How long the record lives (its expiry is pushed back when it completes). */
  readonly ttlMs: number;
}

/** What a claim found. */
export type ClaimResult =
  /** The caller owns the key now. `resumed`: it took over an abandoned claim, whose recovery point it gets. */
  | {
      readonly kind: 'claimed';
      readonly resumed: boolean;
      readonly recoveryPoint: string | null;
    }
  /** Another owner holds a live lease. */
  | { readonly kind: 'in-progress'; readonly retryAfterMs: number }
  /** The key completed; `result` is the stored JSON text. */
  | { readonly kind: 'completed'; readonly result: string }
  /** The record's fingerprint differs from the request's. */
  | { readonly kind: 'mismatch' };

/** The owner's writes. */
export interface OwnerRequest extends RecordId {
  readonly owner: string;
}

/** A store of idempotency records. Every method is atomic on the store. */
export interface IdempotencyStore {
  /**
   * Claim the key: create the record if absent (or expired), take it over if
   * its lease ran out, otherwise report what is there. One round trip on
   * the first request's path.
   */
  claim(request: ClaimRequest): Promise<ClaimResult>;
  /**
   * Store the result and end the claim, if `owner` still holds it; the
   * record then lives `ttlMs` more. Resolves `false` if the claim was lost.
   */
  complete(
    request: OwnerRequest & { readonly result: string; readonly ttlMs: number },
  ): Promise<boolean>;
  /** Push the lease `leaseMs` into the future, if `owner` still holds it. */
  renew(request: OwnerRequest & { readonly leaseMs: number }): Promise<boolean>;
  /**
   * Give the claim up without a result. With `keep: false` the record is
   * deleted (the next request runs afresh); with `keep: true` only the lease
   * ends, so the next request resumes from the recovery point.
   */
  abandon(request: OwnerRequest & { readonly keep: boolean }): Promise<void>;
  /** Record progress of a multi-step operation, if `owner` still holds it. */
  advance(request: OwnerRequest & { readonly recoveryPoint: string }): Promise<boolean>;
}

/** Options of a store's `reap()`. */
export interface ReapOptions {
  /** Records deleted per statement. @default 1000 */
  readonly batchSize?: number;
}

/**
 * The loop of every store's `reap()`: run `deleteBatch(batchSize)` (one
 * statement that deletes at most that many expired records and resolves
 * how many it deleted) until a batch comes back short; resolves the total.
 *
 * @example
 * ```ts
 * reap(options) { return reapInBatches(options, (n) => deleteExpired(n)); }
 * ```
 */
export async function reapInBatches(
  options: ReapOptions,
  deleteBatch: (batchSize: number) => Promise<number>,
): Promise<number> {
  assertPlainObject('options', options);
  const batchSize = options.batchSize ?? 1000;
  assertPositiveInteger('options.batchSize', batchSize);
  let total = 0;
  for (;;) {
    const deleted = await deleteBatch(batchSize);
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
