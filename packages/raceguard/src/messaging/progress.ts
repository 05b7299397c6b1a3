/**
 * Where an ordered consumer learns which sequence of a key comes next, and
 * records what it applied. {@link MemoryProgress} keeps it in the process;
 * `PostgresInbox` (from `raceguard/postgres`) keeps it in the same
 * transaction as the handler's writes, so a crash can neither repeat nor
 * skip an effect.
 */
import { assertNonEmptyString, assertPositiveInteger } from '../core/validate.js';

/** Per-key progress of an ordered consumer. */
export interface SequenceProgress {
  /** The last sequence applied (or given up on) for `key`; 0 when none. */
  lastApplied(key: string, signal?: AbortSignal): Promise<number>;
  /** `seq` of `key` was applied: called after the handler succeeded, before the ack. */
  applied(key: string, seq: number): Promise<void> | void;
  /** `seq` of `key` was dead-lettered: later messages of the key may proceed. */
  skipped(key: string, seq: number, reason: string): Promise<void> | void;
}

/**
 * Progress in memory: deduplicates redeliveries within one process's life.
 * After a restart every key starts again at 1, so use it where handlers are
 * idempotent or the broker delivers each key to one long-lived process; use
 * `PostgresInbox` for exactly-once effects across crashes.
 *
 * @example
 * ```ts
 * const consumer = new OrderedConsumer({ progress: new MemoryProgress(), handler });
 * ```
 */
export class MemoryProgress implements SequenceProgress {
  readonly #last = new Map<string, number>();

  lastApplied(key: string): Promise<number> {
    assertNonEmptyString('key', key);
    return Promise.resolve(this.#last.get(key) ?? 0);
  }

  applied(key: string, seq: number): void {
    assertNonEmptyString('key', key);
    assertPositiveInteger('seq', seq);
    if (seq > (this.#last.get(key) ?? 0)) this.#last.set(key, seq);
  }

  skipped(key: string, seq: number): void {
    this.applied(key, seq);
  }

  /** Keys with progress (for tests and metrics). */
  get size(): number {
    return this.#last.size;
  }
}
