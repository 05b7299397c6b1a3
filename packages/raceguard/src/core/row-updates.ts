/**
 * The option and result shapes of the row fixes every SQL dialect offers
 * (atomic counter updates, optimistic updates), declared once; each dialect
 * fills in its own table, key and row types.
 */
import type { RetryPolicy } from './retry-policy.js';

/** What an atomic counter update answers. */
export type AtomicResultOf<R> =
  /** `row` holds the key columns and the changed column, after the update. */
  | { readonly applied: true; readonly row: R }
  /** The bound would have been crossed; `current` is the row as read right after. */
  | { readonly applied: false; readonly reason: 'limit'; readonly current: R }
  | { readonly applied: false; readonly reason: 'not-found' };

/** The options every atomic counter update takes. */
export interface AtomicUpdateOf<Table, Key> {
  /** Table holding the counter. */
  readonly table: Table;
  /** Equality conditions identifying the row, e.g. `{ id: 42 }`. */
  readonly key: Key;
  /** Integer column to change (stock, balance in minor units, redemptions, ...). */
  readonly column: string;
  /** How much to change it by: a positive safe integer. */
  readonly amount: number;
}

/** The bound of an atomic decrement. */
export interface DecrementBound {
  /**
   * The column never goes below this.
   * @default 0
   */
  readonly floor?: number;
}

/** The bounds of an atomic increment. */
export interface IncrementBounds {
  /** The column never goes above this constant. Unbounded when neither ceiling is set. */
  readonly ceiling?: number;
  /** The column never goes above the value of this other column of the same row (a cap stored with the data). */
  readonly ceilingColumn?: string;
}

/** The options of an optimistic update; `maxAttempts` counts read-compute-write rounds. */
export interface OptimisticUpdateOf<R, Table, Key> extends RetryPolicy {
  /** Table holding the row. */
  readonly table: Table;
  /** Equality conditions that identify exactly one row, e.g. `{ id: 42 }`. */
  readonly key: Key;
  /**
   * Integer column incremented by every successful write.
   * @default 'version'
   */
  readonly versionColumn?: string;
  /**
   * Computes the changes from the row as just read. Return `null` to write
   * nothing (the precondition no longer holds); throw to abort. Called again
   * with a fresh row after every lost race, so it must be safe to re-run.
   */
  readonly update: (
    current: R,
    context: { readonly attempt: number },
  ) => Promise<Readonly<Record<string, unknown>> | null> | Readonly<Record<string, unknown>> | null;
}

/** What an optimistic update answers. */
export interface OptimisticResultOf<R> {
  /** `false` when `update` returned `null`. */
  readonly applied: boolean;
  /** The row after the write (on MySQL, as read with the changes and the new version applied), or as read when nothing was written. */
  readonly row: R;
  /** Attempts used (1 when the first write won). */
  readonly attempts: number;
}
