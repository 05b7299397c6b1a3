/**
 * The transactional outbox on PostgreSQL. A message is written in the
 * caller's business transaction, with a per-key sequence number minted in
 * that same transaction; a relay publishes it afterwards, never skipping a
 * row whose transaction committed late.
 *
 * Why not `WHERE id > last_seen`: a serial id is taken when a row is
 * inserted, not when its transaction commits. A transaction that took id 7
 * and commits after the one that took id 8 is invisible when the relay reads
 * 8 and moves its cursor past 7 — the message is lost. The relay here orders
 * rows by `(tx, id)`, where `tx` is the inserting transaction's `xid8`, and
 * reads only rows of transactions older than the oldest one still running
 * (`pg_snapshot_xmin(pg_current_snapshot())`): every such transaction has
 * ended, so no row can appear behind the cursor later.
 */
import type { OutboxPublisher } from '../../messaging/publisher.js';
import { createHash } from 'node:crypto';
import { backoffDelay } from '../../core/backoff.js';
import { pause } from '../../core/deadline.js';
import { InvalidArgumentError, RaceguardError, messageOf } from '../../core/errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertKnownOptions,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../../core/validate.js';
import { partitionOf, validateMessage, type Message } from '../../messaging/message.js';
import { advisoryLockKey } from '../advisory.js';
import { createOnce } from '../ddl.js';
import { quoteIdentifier, quoteTable, type TableName } from '../identifiers.js';
import { assertListener, type PgListenerLike } from '../release-notifications.js';
import { fromDriverError } from '../errors.js';
import { assertQueryable, runQuery } from '../statements.js';
import type { PoolClientLike, PoolLike, Queryable, Row } from '../types.js';

const OUTBOX_OPTIONS: ReadonlySet<string> = new Set(['client', 'table', 'partitions', 'notify']);

/** Options of {@link PostgresOutbox}. */
export interface PostgresOutboxOptions {
  /** The pool the relay and the table set-up use (`add()` takes the caller's transaction). */
  readonly client: PoolLike;
  /**
   * The outbox table; `<table>_keys` (per-key sequences) and `<table>_cursors`
   * (relay positions) sit beside it.
   * @default 'raceguard_outbox'
   */
  readonly table?: TableName;
  /**
   * Partitions: a key always travels through the same one; one relay at a
   * time publishes a partition. Fixed for the life of the table.
   * @default 8
   */
  readonly partitions?: number;
  /**
   * `NOTIFY` the relays in `add()`. PostgreSQL serialises the commits of
   * transactions that notify; at thousands of messages per second, turn it
   * off and let relays poll.
   * @default true
   */
  readonly notify?: boolean;
}

/** What `add()` writes. */
export interface OutboxEntry<P = unknown> {
  /** The ordering key: messages of one key are numbered 1, 2, 3, … */
  readonly key: string;
  /** What happened, e.g. `order.paid`. */
  readonly type: string;
  /** JSON-serialisable data. */
  readonly payload: P;
  /** String headers carried along. */
  readonly headers?: Readonly<Record<string, string>>;
  /** The message id (brokers deduplicate by it). @default `${key}:${seq}` */
  readonly id?: string;
}

export type { OutboxPublisher };

/** Options of {@link PostgresOutbox.relay}. */
export interface OutboxRelayOptions {
  /** Where messages go (`RabbitPublisher`, `JetStreamPublisher`, or your own). */
  readonly publisher: OutboxPublisher;
  /**
   * A dedicated, connected `pg.Client` to `LISTEN` on, so that a commit
   * wakes the relay at once. Without it the relay polls.
   */
  readonly listener?: PgListenerLike;
  /**
   * How often to look for work without a notification, and to claim
   * partitions another relay gave up.
   * @default 1000
   */
  readonly pollMs?: number;
  /**
   * Rows read and published per round.
   * @default 500
   */
  readonly batchSize?: number;
  /** Told of what the relay does; must not throw. */
  readonly onEvent?: (event: RelayEvent) => void;
  /** Stops the relay (as `stop()` does). */
  readonly signal?: AbortSignal;
}

/** What a relay did. */
export type RelayEvent =
  | { readonly type: 'claimed'; readonly partitions: readonly number[] }
  | { readonly type: 'published'; readonly partition: number; readonly count: number }
  | { readonly type: 'error'; readonly error: unknown; readonly retryInMs: number };

/** A relay failed to reach the database or the broker; it retries. */
export class OutboxRelayError extends RaceguardError {
  constructor(message: string, cause: unknown) {
    super('RACEGUARD_OUTBOX_RELAY', message, { cause });
  }
}

const DEFAULT_TABLE = 'raceguard_outbox';

interface Names {
  readonly outbox: string;
  readonly keys: string;
  readonly cursors: string;
  readonly index: string;
  readonly channel: string;
  readonly lockName: string;
}

function namesOf(table: TableName): Names {
  const bare = typeof table === 'string' ? table : table[1];
  const sibling = (suffix: string): string =>
    typeof table === 'string'
      ? quoteTable(`${table}${suffix}`)
      : quoteTable([table[0], `${table[1]}${suffix}`]);
  const full = typeof table === 'string' ? table : table.join('.');
  return {
    outbox: quoteTable(table),
    keys: sibling('_keys'),
    cursors: sibling('_cursors'),
    index: quoteIdentifier(`${bare}_relay`, 'options.table'),
    channel: `raceguard_outbox_${createHash('sha256').update(full).digest('hex').slice(0, 16)}`,
    lockName: `raceguard:outbox:${full}`,
  };
}

/**
 * A transactional outbox.
 *
 * @example
 * ```ts
 * const outbox = new PostgresOutbox({ client: pool });
 * await outbox.createTables();
 * await transaction(pool, async (tx) => {
 *   await tx.query('UPDATE orders SET status = $2 WHERE id = $1', [id, 'paid']);
 *   await outbox.add(tx, { key: `order:${id}`, type: 'order.paid', payload: { id } });
 * });
 * const relay = outbox.relay({ publisher, listener });
 * relay.start();
 * ```
 */
export class PostgresOutbox {
  readonly #db: PoolLike;
  readonly #names: Names;
  readonly #partitions: number;
  readonly #notify: boolean;
  readonly #insert: string;

  constructor(options: PostgresOutboxOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OUTBOX_OPTIONS, {
      db: 'unset: it is called client, as on every raceguard backend (db was its name before 0.1)',
    });
    assertQueryable('options.client', options.client);
    assertFunction('options.client.connect', (options.client as { connect?: unknown }).connect);
    this.#db = options.client;
    this.#names = namesOf(options.table ?? DEFAULT_TABLE);
    this.#partitions = options.partitions ?? 8;
    assertPositiveInteger('options.partitions', this.#partitions);
    if (this.#partitions > 1024) {
      throw new InvalidArgumentError('options.partitions', 'at most 1024', this.#partitions);
    }
    this.#notify = options.notify ?? true;
    if (typeof this.#notify !== 'boolean') {
      throw new InvalidArgumentError('options.notify', 'a boolean', this.#notify);
    }
    const { outbox, keys, channel } = this.#names;
    // One round trip: mint the key's next sequence (row-locking only this
    // key until commit), insert the message, and notify on commit.
    this.#insert = `WITH s AS (
        INSERT INTO ${keys} AS k (key, last_seq) VALUES ($1, 1)
        ON CONFLICT (key) DO UPDATE SET last_seq = k.last_seq + 1
        RETURNING last_seq
      ), m AS (
        INSERT INTO ${outbox} (partition, key, seq, message_id, type, payload, headers)
        SELECT $2, $1, s.last_seq, COALESCE($3, $1 || ':' || s.last_seq), $4, $5::jsonb, $6::jsonb
        FROM s
        RETURNING seq, message_id
      )
      SELECT m.seq, m.message_id${this.#notify ? `, pg_notify('${channel}', $2::text) AS notified` : ''} FROM m`;
  }

  /** Partitions of this outbox. */
  get partitions(): number {
    return this.#partitions;
  }

  /** Create the outbox, key-sequence and cursor tables if missing (safe from every instance). */
  async createTables(): Promise<void> {
    const { outbox, keys, cursors, index, lockName } = this.#names;
    await createOnce(this.#db, `${lockName}:ddl`, [
      `CREATE TABLE IF NOT EXISTS ${keys} (
        key text PRIMARY KEY,
        last_seq bigint NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS ${outbox} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
        partition integer NOT NULL,
        key text NOT NULL,
        seq bigint NOT NULL,
        message_id text NOT NULL,
        type text NOT NULL,
        payload jsonb NOT NULL,
        headers jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (key, seq)
      )`,
      `CREATE INDEX IF NOT EXISTS ${index} ON ${outbox} (partition, tx, id)`,
      `CREATE TABLE IF NOT EXISTS ${cursors} (
        partition integer PRIMARY KEY,
        tx xid8 NOT NULL DEFAULT '0',
        id bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
    ]);
  }

  /**
   * Write a message in the caller's transaction; resolves to it, with the
   * sequence number its key got. Transactions adding to the same key
   * serialise on that key's row (their order is the key's order);
   * different keys do not wait for each other.
   */
  async add<P>(tx: Queryable, entry: OutboxEntry<P>): Promise<Message<P>> {
    assertQueryable('tx', tx);
    assertPlainObject('entry', entry);
    assertNonEmptyString('entry.key', entry.key);
    assertNonEmptyString('entry.type', entry.type);
    if (entry.id !== undefined) assertNonEmptyString('entry.id', entry.id);
    const headers = entry.headers ?? {};
    validateMessage(
      { id: entry.id ?? 'x', key: entry.key, seq: 1, type: entry.type, payload: null, headers },
      'entry',
    );
    const payload = JSON.stringify(entry.payload);
    if (payload === undefined) {
      throw new InvalidArgumentError('entry.payload', 'JSON-serialisable', entry.payload);
    }
    const partition = partitionOf(entry.key, this.#partitions);
    const { rows } = await runQuery(tx, this.#insert, [
      entry.key,
      partition,
      entry.id ?? null,
      entry.type,
      payload,
      JSON.stringify(headers),
    ]);
    const row = rows[0] as { seq: string | number; message_id: string };
    return {
      id: row.message_id,
      key: entry.key,
      seq: Number(row.seq),
      type: entry.type,
      payload: entry.payload,
      headers,
    };
  }

  /**
   * Delete messages every relay has published and that are older than
   * `olderThanMs`; resolves to how many. The key-sequence table keeps one
   * row per key (a key's numbering must never restart).
   */
  async purge(options: { readonly olderThanMs: number }): Promise<number> {
    assertPlainObject('options', options);
    assertPositiveInteger('options.olderThanMs', options.olderThanMs);
    const { outbox, cursors } = this.#names;
    const { rowCount } = await runQuery(
      this.#db,
      `DELETE FROM ${outbox} o USING ${cursors} c
       WHERE o.partition = c.partition AND (o.tx, o.id) <= (c.tx, c.id)
         AND o.created_at < now() - $1 * interval '1 millisecond'`,
      [options.olderThanMs],
    );
    return rowCount ?? 0;
  }

  /** A relay over this outbox (call `start()`); several may run, one per partition at a time. */
  relay(options: OutboxRelayOptions): OutboxRelay {
    return new OutboxRelay(this.#db, this.#names, this.#partitions, options);
  }
}

interface OutboxRow {
  /** Fetched ahead of the cursor as a key's predecessor (it does not move the cursor). */
  readonly early?: boolean;
  readonly partition: number;
  readonly id: string;
  readonly tx: string;
  readonly key: string;
  readonly seq: number;
  readonly message: Message;
}

function toRow(row: Row): OutboxRow {
  const key = String(row.key);
  const seq = Number(row.seq);
  return {
    partition: Number(row.partition),
    id: String(row.id),
    tx: String(row.tx),
    key,
    seq,
    message: {
      id: String(row.message_id),
      key,
      seq,
      type: String(row.type),
      payload: row.payload,
      headers: (row.headers ?? {}) as Record<string, string>,
    },
  };
}

const RELAY_OPTIONS = new Set<string>([
  'publisher',
  'listener',
  'pollMs',
  'batchSize',
  'onEvent',
  'signal',
]);

/** Per-key published sequences kept in memory (for skipping rows published early). */
const MAX_REMEMBERED_KEYS = 100_000;

/**
 * Publishes an outbox's messages in per-key order, at least once. Takes the
 * partitions no other relay holds (a session advisory lock each, held on
 * one connection); a relay that dies frees them for the others.
 */
export class OutboxRelay implements AsyncDisposable {
  readonly #db: PoolLike;
  readonly #names: Names;
  readonly #partitions: number;
  readonly #publisher: OutboxPublisher;
  readonly #listener: PgListenerLike | undefined;
  readonly #pollMs: number;
  readonly #batchSize: number;
  readonly #onEvent: ((event: RelayEvent) => void) | undefined;
  readonly #stopping = new AbortController();
  readonly #published = new Map<string, number>();
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #woken = false;
  #owned: number[] = [];
  /** Partition lock names carry the table's oid: two schemas' outboxes never share a lock. */
  #lockBase: string | undefined;
  #polling: Promise<number> | undefined;
  #pollClient: PoolClientLike | undefined;

  constructor(db: PoolLike, names: Names, partitions: number, options: OutboxRelayOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, RELAY_OPTIONS);
    assertPlainObject('options.publisher', options.publisher);
    assertFunction(
      'options.publisher.publish',
      (options.publisher as unknown as Record<string, unknown>).publish,
    );
    if (options.listener !== undefined) assertListener('options.listener', options.listener);
    this.#pollMs = options.pollMs ?? 1000;
    assertPositiveInteger('options.pollMs', this.#pollMs);
    this.#batchSize = options.batchSize ?? 500;
    assertPositiveInteger('options.batchSize', this.#batchSize);
    if (options.onEvent !== undefined) assertFunction('options.onEvent', options.onEvent);
    assertAbortSignal('options.signal', options.signal);
    this.#db = db;
    this.#names = names;
    this.#partitions = partitions;
    this.#publisher = options.publisher;
    this.#listener = options.listener;
    this.#onEvent = options.onEvent;
    options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (options.signal?.aborted === true) this.#stopping.abort();
  }

  /** Partitions this relay holds now. */
  get partitions(): readonly number[] {
    return [...this.#owned];
  }

  /** Start relaying (in the background). Idempotent. */
  start(): this {
    if (this.#polling !== undefined) {
      throw new InvalidArgumentError(
        'start()',
        'not mixed with poll()',
        'a relay driven by poll()',
      );
    }
    if (this.#loop === undefined && !this.#stopping.signal.aborted) {
      this.#loop = this.#run();
    }
    return this;
  }

  /**
   * Relay what is ready now, once, and resolve to the rows moved past: for
   * tests, or to drive the relay from a scheduler of your own instead of
   * `start()`. The relay keeps its connection (and the partitions it
   * claimed) until `stop()`.
   */
  async poll(): Promise<number> {
    if (this.#loop !== undefined) {
      throw new InvalidArgumentError('poll()', 'not mixed with start()', 'a started relay');
    }
    if (this.#stopping.signal.aborted) return 0;
    const previous = this.#polling ?? Promise.resolve(0);
    const next = previous
      .catch(() => 0)
      .then(async () => {
        this.#pollClient ??= await this.#connect();
        try {
          await this.#claim(this.#pollClient);
          const counts = await this.#relayAll(this.#pollClient, this.#stopping.signal);
          return counts.reduce((a, b) => a + b, 0);
        } catch (error) {
          this.#pollClient.release(error instanceof Error ? error : new Error(String(error)));
          this.#pollClient = undefined;
          this.#owned = [];
          throw error;
        }
      });
    this.#polling = next;
    return next;
  }

  /** Stop after the batch in flight; frees the partitions. Idempotent. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#wake?.();
    await this.#loop;
    await this.#polling?.catch(() => undefined);
    const client = this.#pollClient;
    this.#pollClient = undefined;
    if (client !== undefined) {
      await this.#unlockAll(client);
      client.release();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /**
   * Resolves once every message committed before the call has been
   * published (by whichever relay holds its partition), or when `signal`
   * fires or this relay stops. For tests and shutdown.
   */
  async flush(signal?: AbortSignal): Promise<void> {
    const { rows } = await runQuery(
      this.#db,
      'SELECT pg_current_xact_id()::text AS tx, pg_snapshot_xmin(pg_current_snapshot())::text AS xmin',
    );
    const horizon = BigInt(String(rows[0]?.tx));
    for (;;) {
      if (signal?.aborted === true || this.#stopping.signal.aborted) return;
      const { rows: pending } = await runQuery(
        this.#db,
        `SELECT 1 FROM ${this.#names.outbox} o
         LEFT JOIN ${this.#names.cursors} c ON c.partition = o.partition
         WHERE o.tx < $1::xid8 AND (c.partition IS NULL OR (o.tx, o.id) > (c.tx, c.id))
         LIMIT 1`,
        [horizon.toString()],
      );
      if (pending.length === 0) return;
      this.#nudge();
      await pause(20, { signal });
    }
  }

  #emit(event: RelayEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener's failure must not stop the relay.
    }
  }

  #nudge(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    let failures = 0;
    let unlisten: (() => void) | undefined;
    while (!signal.aborted) {
      let client: PoolClientLike | undefined;
      try {
        unlisten ??= await this.#listen();
        client = await this.#connect();
        await this.#claim(client);
        failures = 0;
        let lastClaim = performance.now();
        while (!signal.aborted) {
          // One round over every partition held: one read, one publish, one cursor update.
          const counts = await this.#relayAll(client, signal);
          const busy = counts.some((count) => count >= this.#batchSize);
          if (performance.now() - lastClaim >= this.#pollMs) {
            await this.#claim(client);
            lastClaim = performance.now();
          }
          if (!busy) await this.#idle(signal);
        }
      } catch (error) {
        if (signal.aborted) break;
        failures++;
        const retryInMs = Math.max(
          50,
          backoffDelay(failures, { baseDelayMs: 200, maxDelayMs: 5000 }),
        );
        this.#emit({
          type: 'error',
          error: new OutboxRelayError(`outbox relay: ${messageOf(error)}`, error),
          retryInMs,
        });
        // The session (and its partition locks) is dropped: another relay may take over.
        client?.release(error instanceof Error ? error : new Error(String(error)));
        client = undefined;
        this.#owned = [];
        await pause(retryInMs, { signal }).catch(() => undefined);
        continue;
      } finally {
        if (client !== undefined) {
          await this.#unlockAll(client);
          client.release();
        }
      }
    }
    unlisten?.();
  }

  /** A session for the relay; the table's oid names its partition locks. */
  async #connect(): Promise<PoolClientLike> {
    let client: PoolClientLike;
    try {
      client = await this.#db.connect();
    } catch (error) {
      throw fromDriverError(error);
    }
    if (this.#lockBase !== undefined) return client;
    try {
      const { rows } = await runQuery(client, 'SELECT to_regclass($1)::oid::text AS oid', [
        this.#names.outbox,
      ]);
      const oid = rows[0]?.oid;
      if (typeof oid !== 'string') {
        throw new OutboxRelayError(
          `outbox relay: table ${this.#names.outbox} does not exist (run createTables() first)`,
          undefined,
        );
      }
      this.#lockBase = `raceguard:outbox:${oid}`;
      return client;
    } catch (error) {
      client.release();
      throw error;
    }
  }

  async #idle(signal: AbortSignal): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    await pause(this.#pollMs, {
      signal,
      wakeOn: (wake) => {
        this.#wake = wake;
        return () => (this.#wake = undefined);
      },
    }).catch(() => undefined);
    this.#woken = false;
  }

  async #listen(): Promise<() => void> {
    const listener = this.#listener;
    if (listener === undefined) return () => undefined;
    const channel = this.#names.channel;
    const onNotification = (message: { channel: string; payload?: string | undefined }): void => {
      if (message.channel === channel) this.#nudge();
    };
    listener.on('notification', onNotification);
    await listener.query(`LISTEN ${quoteIdentifier(channel, 'channel')}`);
    return () => {
      const remove = (listener as { off?: (e: string, l: unknown) => unknown }).off;
      remove?.call(listener, 'notification', onNotification);
    };
  }

  #lockKey(partition: number): string {
    return advisoryLockKey(`${this.#lockBase ?? this.#names.lockName}:${partition}`).toString();
  }

  /** Take every partition no other relay holds (non-blocking advisory locks). */
  async #claim(client: PoolClientLike): Promise<void> {
    const free = [...Array(this.#partitions).keys()].filter((p) => !this.#owned.includes(p));
    if (free.length === 0) return;
    const { rows } = await runQuery(
      client,
      `SELECT p FROM unnest($1::int[], $2::bigint[]) AS t(p, k) WHERE pg_try_advisory_lock(k)`,
      [free, free.map((p) => this.#lockKey(p))],
    );
    const claimed = rows.map((r) => Number(r.p));
    if (claimed.length === 0) return;
    await runQuery(
      client,
      `INSERT INTO ${this.#names.cursors} (partition) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING`,
      [claimed],
    );
    this.#owned = [...this.#owned, ...claimed].sort((a, b) => a - b);
    this.#emit({ type: 'claimed', partitions: claimed });
  }

  async #unlockAll(client: PoolClientLike): Promise<void> {
    if (this.#owned.length === 0) return;
    await runQuery(client, 'SELECT pg_advisory_unlock_all()').catch(() => undefined);
    this.#owned = [];
  }

  /**
   * One round over every partition held, in four round trips at most: read
   * a batch of each partition, fetch the predecessors some keys need, publish
   * everything (one broker call), move every cursor (one commit). Resolves
   * to the rows each partition moved past.
   */
  async #relayAll(client: PoolClientLike, signal: AbortSignal): Promise<number[]> {
    const partitions = [...this.#owned];
    if (partitions.length === 0) return [];
    const { outbox, cursors } = this.#names;
    const columns =
      'o.partition, o.id::text, o.tx::text, o.key, o.seq, o.message_id, o.type, o.payload, o.headers';
    // Each partition: the rows past its cursor, in (tx, id) order, of
    // transactions older than the oldest one still running on the server.
    const { rows } = await runQuery(
      client,
      `SELECT ${columns}
       FROM ${cursors} c
       CROSS JOIN LATERAL (
         SELECT * FROM ${outbox} i
         WHERE i.partition = c.partition AND (i.tx, i.id) > (c.tx, c.id)
           AND i.tx < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY i.tx, i.id
         LIMIT $2
       ) o
       WHERE c.partition = ANY($1::int[])
       ORDER BY o.partition, o.tx, o.id`,
      [partitions, this.#batchSize],
    );
    const batch = rows.map(toRow);
    // A key's sequence order is its commit order, but not its (tx, id)
    // order: a transaction that took its xid early and waited for the key's
    // row carries a later sequence under an older xid. So a round can hold
    // a key's seq N+1 without N (N's xid is above the fence, or past the
    // batch limit). Every committed N is visible once N+1 is (N+1 could
    // only be minted after N's transaction committed): fetch each key's
    // missing sequences not yet passed by the cursor and publish them first.
    // What is missing and not fetched is behind the cursor: published. (A
    // relay's memory of what it published is only a hint: after a restart
    // or a partition's hand-over it is empty or behind, never ahead.)
    const have = new Map<string, { partition: number; seqs: Set<number>; high: number }>();
    for (const row of batch) {
      const entry = have.get(row.key) ?? { partition: row.partition, seqs: new Set(), high: 0 };
      entry.seqs.add(row.seq);
      entry.high = Math.max(entry.high, row.seq);
      have.set(row.key, entry);
    }
    const unsure = [...have].filter(([key, { seqs, high }]) => {
      const low = this.#published.get(key) ?? 0;
      let present = 0;
      for (const seq of seqs) if (seq > low) present++;
      return present < high - low;
    });
    if (unsure.length > 0) {
      const { rows: before } = await runQuery(
        client,
        `SELECT ${columns}
         FROM unnest($1::int[], $2::text[], $3::bigint[], $4::bigint[]) AS u(partition, key, low, high)
         JOIN ${cursors} c ON c.partition = u.partition
         JOIN ${outbox} o ON o.key = u.key AND o.partition = u.partition
         WHERE o.seq > u.low AND o.seq < u.high AND (o.tx, o.id) > (c.tx, c.id)`,
        [
          unsure.map(([, entry]) => entry.partition),
          unsure.map(([key]) => key),
          unsure.map(([key]) => this.#published.get(key) ?? 0),
          unsure.map(([, entry]) => entry.high),
        ],
      );
      batch.push(...before.map((row) => ({ ...toRow(row), early: true })));
    }
    const publish = this.#publishOrder(batch);
    if (publish.length > 0) {
      await this.#publisher.publish(
        publish.map((row) => row.message),
        signal,
      );
      for (const row of publish) this.#remember(row.key, row.seq);
    }
    // Every cursor to its batch's greatest (tx, id), in one statement; never
    // backwards. Every row of the batch was published (or had been), and
    // every row the cursor passes is one of them.
    const last = new Map<number, OutboxRow>();
    const counts = new Map<number, number>();
    for (const row of batch) {
      if (row.early === true) continue;
      counts.set(row.partition, (counts.get(row.partition) ?? 0) + 1);
      last.set(row.partition, row); // the batch is in (partition, tx, id) order
    }
    if (last.size > 0) {
      const moved = [...last.values()];
      await runQuery(
        client,
        `UPDATE ${cursors} c SET tx = v.tx, id = v.id, updated_at = now()
         FROM unnest($1::int[], $2::xid8[], $3::bigint[]) AS v(partition, tx, id)
         WHERE c.partition = v.partition AND (c.tx, c.id) < (v.tx, v.id)`,
        [moved.map((r) => r.partition), moved.map((r) => r.tx), moved.map((r) => r.id)],
      );
      for (const [partition, count] of counts) this.#emit({ type: 'published', partition, count });
    }
    return partitions.map((p) => counts.get(p) ?? 0);
  }

  /**
   * What to publish, once each: every key's rows in sequence order, placed
   * in the slots its rows take in commit order (predecessors fetched early
   * first), so that keys stay interleaved and the broker's partition queues
   * are fed side by side rather than one key after another.
   */
  #publishOrder(rows: readonly OutboxRow[]): OutboxRow[] {
    const seen = new Set<string>();
    const slots: OutboxRow[] = [];
    const early = rows.filter((r) => r.early === true);
    for (const row of [...early, ...rows.filter((r) => r.early !== true)]) {
      const id = `${row.seq}:${row.key}`;
      if (row.seq <= (this.#published.get(row.key) ?? 0) || seen.has(id)) continue;
      seen.add(id);
      slots.push(row);
    }
    const bySeq = new Map<string, OutboxRow[]>();
    for (const row of slots) {
      const list = bySeq.get(row.key) ?? [];
      list.push(row);
      bySeq.set(row.key, list);
    }
    for (const list of bySeq.values()) list.sort((a, b) => a.seq - b.seq);
    const taken = new Map<string, number>();
    return slots.map((slot) => {
      const i = taken.get(slot.key) ?? 0;
      taken.set(slot.key, i + 1);
      return (bySeq.get(slot.key) as OutboxRow[])[i] as OutboxRow;
    });
  }

  #remember(key: string, seq: number): void {
    if (seq <= (this.#published.get(key) ?? 0)) return;
    this.#published.delete(key);
    this.#published.set(key, seq);
    if (this.#published.size > MAX_REMEMBERED_KEYS) {
      const oldest = this.#published.keys().next().value;
      if (oldest !== undefined) this.#published.delete(oldest);
    }
  }
}
