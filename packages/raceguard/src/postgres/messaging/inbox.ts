/**
 * The inbox: exactly-once effects for message handlers that write to
 * PostgreSQL. The last sequence applied per consumer and key is advanced in
 * the same transaction as the handler's writes, only from `seq - 1` to
 * `seq`: a redelivered message finds its sequence already there and does
 * nothing, a crash rolls both back, and nothing can be applied past a hole.
 */
import { InvalidArgumentError, RaceguardError } from '../../core/errors.js';
import {
  assertFunction,
  assertKnownOptions,
  assertNonEmptyString,
  assertPlainObject,
} from '../../core/validate.js';
import type { HandlerContext } from '../../messaging/ordered-consumer.js';
import { validateMessage, type Message } from '../../messaging/message.js';
import type { SequenceProgress } from '../../messaging/progress.js';
import { createOnce } from '../ddl.js';
import { quoteTable, type TableName } from '../identifiers.js';
import { assertQueryable, runQuery } from '../statements.js';
import { transaction, type Transaction, type TransactionOptions } from '../transaction.js';
import type { PoolLike, Queryable } from '../types.js';

const INBOX_OPTIONS: ReadonlySet<string> = new Set(['client', 'consumer', 'table', 'transaction']);

/** Options of {@link PostgresInbox}. */
export interface PostgresInboxOptions {
  /** The pool the inbox's transactions run on. */
  readonly client: PoolLike;
  /** This consumer's name: consumers of one stream keep separate progress. */
  readonly consumer: string;
  /** @default 'raceguard_inbox' */
  readonly table?: TableName;
  /** Options of each handler transaction (isolation, timeouts, retries of 40001/40P01). */
  readonly transaction?: Omit<TransactionOptions, 'signal'>;
}

/** What {@link PostgresInbox.apply} did. */
export type InboxOutcome<T> =
  | { readonly applied: true; readonly value: T }
  | { readonly applied: false; readonly reason: 'duplicate' };

/**
 * A message arrived at the inbox before its predecessor was applied (another
 * process is applying it, or it was lost upstream). Nothing was written;
 * the ordered consumer retries it.
 */
export class InboxGapError extends RaceguardError {
  readonly key: string;
  readonly lastApplied: number;
  readonly seq: number;

  constructor(key: string, lastApplied: number, seq: number) {
    super(
      'RACEGUARD_INBOX_GAP',
      `inbox: message ${seq} of key ${JSON.stringify(key)} arrived, but the last applied is ${lastApplied}`,
    );
    this.key = key;
    this.lastApplied = lastApplied;
    this.seq = seq;
  }
}

const DEFAULT_TABLE = 'raceguard_inbox';
const MAX_REMEMBERED_KEYS = 100_000;

/**
 * The PostgreSQL inbox; also the {@link SequenceProgress} of an
 * `OrderedConsumer`, so that a restarted consumer knows where each key was.
 *
 * @example
 * ```ts
 * const inbox = new PostgresInbox({ client: pool, consumer: 'billing' });
 * await inbox.createTable();
 * const consumer = new OrderedConsumer({
 *   progress: inbox,
 *   handler: inbox.handler(async (message, tx) => {
 *     await tx.query('UPDATE orders SET status = $2 WHERE id = $1', [message.key, message.type]);
 *   }),
 * });
 * ```
 */
export class PostgresInbox implements SequenceProgress {
  readonly #db: PoolLike;
  readonly #consumer: string;
  readonly #table: string;
  readonly #transaction: Omit<TransactionOptions, 'signal'>;
  /** The last sequence this process applied through {@link apply}, per key. */
  readonly #recorded = new Map<string, number>();

  constructor(options: PostgresInboxOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, INBOX_OPTIONS, {
      db: 'unset: it is called client, as on every raceguard backend (db was its name before 0.1)',
    });
    assertQueryable('options.client', options.client);
    assertNonEmptyString('options.consumer', options.consumer);
    this.#db = options.client;
    this.#consumer = options.consumer;
    this.#table = quoteTable(options.table ?? DEFAULT_TABLE);
    this.#transaction = options.transaction ?? {};
    assertPlainObject('options.transaction', this.#transaction);
    if ('signal' in this.#transaction) {
      throw new InvalidArgumentError(
        'options.transaction.signal',
        'absent (each message has its own signal)',
        (this.#transaction as { signal?: unknown }).signal,
      );
    }
  }

  /** Create the inbox table if missing (safe from every instance). */
  async createTable(): Promise<void> {
    await createOnce(this.#db, `raceguard:ddl:${this.#table}`, [
      `CREATE TABLE IF NOT EXISTS ${this.#table} (
        consumer text NOT NULL,
        key text NOT NULL,
        last_seq bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, key)
      )`,
    ]);
  }

  async lastApplied(key: string): Promise<number> {
    assertNonEmptyString('key', key);
    const { rows } = await runQuery(
      this.#db,
      `SELECT last_seq FROM ${this.#table} WHERE consumer = $1 AND key = $2`,
      [this.#consumer, key],
    );
    return rows.length === 0 ? 0 : Number(rows[0]?.last_seq);
  }

  /**
   * Run `fn` in a transaction that also records `message` as applied, if
   * and only if it is the key's next one. A message already applied is a
   * duplicate: `fn` does not run. One that comes too early throws
   * {@link InboxGapError} (nothing written).
   */
  async apply<T>(
    message: Message,
    fn: (tx: Transaction) => Promise<T>,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<InboxOutcome<T>> {
    validateMessage(message);
    assertFunction('fn', fn);
    const { key, seq } = message;
    const outcome = await transaction(
      this.#db,
      async (tx): Promise<InboxOutcome<T>> => {
        const moved = await this.#advance(tx, key, seq);
        if (!moved) return { applied: false, reason: 'duplicate' };
        return { applied: true, value: await fn(tx) };
      },
      { ...this.#transaction, ...(options.signal !== undefined && { signal: options.signal }) },
    );
    if (outcome.applied) this.#remember(key, seq);
    return outcome;
  }

  /**
   * A handler for `OrderedConsumer` that runs `fn` through {@link apply}:
   * the message's effects and its record commit together.
   */
  handler(
    fn: (message: Message, tx: Transaction, context: HandlerContext) => Promise<unknown>,
  ): (message: Message, context: HandlerContext) => Promise<void> {
    assertFunction('fn', fn);
    return async (message, context) => {
      await this.apply(message, (tx) => fn(message, tx, context), { signal: context.signal });
    };
  }

  /**
   * Called by the consumer after a handler succeeded: nothing to do when the
   * handler went through {@link apply} (it recorded the message in its own
   * transaction); otherwise the message is recorded now.
   */
  async applied(key: string, seq: number): Promise<void> {
    if ((this.#recorded.get(key) ?? 0) >= seq) return;
    await this.#raise(key, seq);
  }

  /** A dead-lettered message counts as handled, so the key's next one can apply. */
  async skipped(key: string, seq: number): Promise<void> {
    await this.#raise(key, seq);
  }

  /** Move `key` from `seq - 1` to `seq` in `tx`; false for a duplicate. */
  async #advance(tx: Queryable, key: string, seq: number): Promise<boolean> {
    const updated = await runQuery(
      tx,
      `UPDATE ${this.#table} SET last_seq = $3, updated_at = now()
       WHERE consumer = $1 AND key = $2 AND last_seq = $3 - 1`,
      [this.#consumer, key, seq],
    );
    if (updated.rowCount === 1) return true;
    if (seq === 1) {
      const inserted = await runQuery(
        tx,
        `INSERT INTO ${this.#table} (consumer, key, last_seq) VALUES ($1, $2, 1)
         ON CONFLICT (consumer, key) DO NOTHING`,
        [this.#consumer, key],
      );
      if (inserted.rowCount === 1) return true;
    }
    const { rows } = await runQuery(
      tx,
      `SELECT last_seq FROM ${this.#table} WHERE consumer = $1 AND key = $2`,
      [this.#consumer, key],
    );
    const last = rows.length === 0 ? 0 : Number(rows[0]?.last_seq);
    if (last >= seq) return false;
    throw new InboxGapError(key, last, seq);
  }

  /** Record `seq` as handled unless the key is already past it (autocommit). */
  async #raise(key: string, seq: number): Promise<void> {
    await runQuery(
      this.#db,
      `INSERT INTO ${this.#table} AS i (consumer, key, last_seq) VALUES ($1, $2, $3)
       ON CONFLICT (consumer, key) DO UPDATE SET last_seq = $3, updated_at = now()
       WHERE i.last_seq < $3`,
      [this.#consumer, key, seq],
    );
    this.#remember(key, seq);
  }

  #remember(key: string, seq: number): void {
    if (seq <= (this.#recorded.get(key) ?? 0)) return;
    this.#recorded.delete(key);
    this.#recorded.set(key, seq);
    // Bounded: a forgotten key only costs one extra write in applied().
    if (this.#recorded.size > MAX_REMEMBERED_KEYS) {
      const oldest = this.#recorded.keys().next().value;
      if (oldest !== undefined) this.#recorded.delete(oldest);
    }
  }
}
