/**
 * The transactional outbox and the inbox on a real PostgreSQL: the
 * late-committing row a serial-id relay skips (shown, and never lost by
 * raceguard's relay over 1,000 trials), per-key order through concurrent
 * writers, failover between relays, retention, and exactly-once effects
 * under concurrent redelivery.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import { OrderedConsumer } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import {
  InboxGapError,
  PostgresInbox,
} from '../../packages/raceguard/src/postgres/messaging/inbox.js';
import {
  PostgresOutbox,
  type OutboxPublisher,
  type RelayEvent,
} from '../../packages/raceguard/src/postgres/messaging/outbox.js';
import { transaction } from '../../packages/raceguard/src/postgres/transaction.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { checkHistory, clean, type Applied } from '../helpers/sequence-history.js';

/** The broker end of a relay in these tests: what was confirmed, in order. */
class RecordingPublisher implements OutboxPublisher {
  readonly published: Message[] = [];
  failNext = 0;
  async publish(messages: readonly Message[]): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('broker unreachable');
    }
    this.published.push(...messages);
  }
}

/**
 * Poll until `done()`: the relay's fence is the oldest transaction running
 * anywhere on the server, so another test file's open transaction can hold
 * rows back (never lose them) for a while.
 */
async function pollUntil(relay: { poll(): Promise<number> }, done: () => boolean): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!done()) {
    assert.ok(performance.now() < deadline, 'the relay did not catch up within 30 s');
    if ((await relay.poll()) === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function begin(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  await client.query('BEGIN');
  return client;
}

describe('PostgresOutbox', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(20);
  });
  after(() => db.close());

  it('control: a relay that polls id > last_seen skips a row whose transaction commits late', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'naive_outbox', notify: false });
    await outbox.createTables();
    let lastSeen = 0;
    const seen: string[] = [];
    const naivePoll = async () => {
      const { rows } = await db.pool.query<{ id: string; key: string }>(
        'SELECT id, key FROM naive_outbox WHERE id > $1 ORDER BY id',
        [lastSeen],
      );
      for (const row of rows) {
        seen.push(row.key);
        lastSeen = Math.max(lastSeen, Number(row.id));
      }
    };
    const early = await begin(db.pool);
    await outbox.add(early, { key: 'a', type: 't', payload: 1 }); // takes the lower id
    const late = await begin(db.pool);
    await outbox.add(late, { key: 'b', type: 't', payload: 2 });
    await late.query('COMMIT');
    await naivePoll(); // sees b, moves past a's id
    await early.query('COMMIT');
    await naivePoll();
    early.release();
    late.release();
    assert.deepEqual(seen, ['b'], 'the message of the late commit is lost');
  });

  it('never skips a late-committing row: 1,000 trials of two transactions committing out of id order', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'skip_outbox', partitions: 1 });
    await outbox.createTables();
    const publisher = new RecordingPublisher();
    const relay = outbox.relay({ publisher });
    const a = await db.pool.connect();
    const b = await db.pool.connect();
    try {
      for (let trial = 0; trial < 1000; trial++) {
        await a.query('BEGIN');
        await outbox.add(a, { key: `a${trial}`, type: 't', payload: trial });
        await b.query('BEGIN');
        await outbox.add(b, { key: `b${trial}`, type: 't', payload: trial });
        await b.query('COMMIT');
        await relay.poll(); // b's row is committed, a's transaction still runs
        await a.query('COMMIT');
        await relay.poll();
      }
      await pollUntil(relay, () => publisher.published.length >= 2000);
    } finally {
      a.release();
      b.release();
      await relay.stop();
    }
    const keys = new Set(publisher.published.map((m) => m.key));
    const lost = [...Array(1000).keys()].flatMap((t) =>
      [`a${t}`, `b${t}`].filter((k) => !keys.has(k)),
    );
    assert.deepEqual(lost, []);
    assert.equal(publisher.published.length, 2000, 'each once');
  });

  it('publishes a key in sequence order even when the later sequence has the older transaction id', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'order_outbox', partitions: 1 });
    await outbox.createTables();
    await db.pool.query('CREATE TABLE IF NOT EXISTS side_effects (n int)');
    // B takes its xid first, then waits for the key's row that A holds: B's seq is 2, its xid lower.
    const b = await begin(db.pool);
    await b.query('INSERT INTO side_effects VALUES (1)');
    const a = await begin(db.pool);
    const first = await outbox.add(a, { key: 'k', type: 'created', payload: {} });
    const second = outbox.add(b, { key: 'k', type: 'paid', payload: {} });
    await a.query('COMMIT');
    assert.equal((await second).seq, 2);
    await b.query('COMMIT');
    a.release();
    b.release();
    assert.equal(first.seq, 1);
    const publisher = new RecordingPublisher();
    const relay = outbox.relay({ publisher, batchSize: 1 });
    try {
      await pollUntil(relay, () => publisher.published.length >= 2);
      await relay.poll();
    } finally {
      await relay.stop();
    }
    assert.deepEqual(
      publisher.published.map((m) => `${m.type}#${m.seq}`),
      ['created#1', 'paid#2'],
    );
  });

  it('regression: a hole inside a round (seq 2 above the xmin fence) holds back seq 3 until 2 is published', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'hole_outbox', partitions: 1 });
    await outbox.createTables();
    const late = await begin(db.pool);
    await late.query('SELECT pg_current_xact_id()'); // takes its xid early
    const prev = await begin(db.pool);
    await outbox.add(prev, { key: 'K', type: 't', payload: 1 });
    await prev.query('COMMIT');
    const other = await begin(db.pool);
    await other.query('SELECT pg_current_xact_id()'); // holds the fence below mid
    const mid = await begin(db.pool);
    await outbox.add(mid, { key: 'K', type: 't', payload: 2 });
    await mid.query('COMMIT');
    await outbox.add(late, { key: 'K', type: 't', payload: 3 });
    await late.query('COMMIT');
    const publisher = new RecordingPublisher();
    const relay = outbox.relay({ publisher });
    try {
      await relay.poll();
      await other.query('COMMIT');
      await pollUntil(relay, () => publisher.published.length >= 3);
      await relay.poll();
    } finally {
      for (const c of [late, prev, other, mid]) c.release();
      await relay.stop();
    }
    assert.deepEqual(
      publisher.published.map((m) => `${m.key}#${m.seq}`),
      ['K#1', 'K#2', 'K#3'],
    );
  });

  it('regression: a hole past the batch limit (batchSize 2, no other open transaction) is filled, never skipped', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'hole2_outbox', partitions: 1 });
    await outbox.createTables();
    const late = await begin(db.pool);
    await late.query('SELECT pg_current_xact_id()');
    for (const payload of [1, 2]) {
      const tx = await begin(db.pool);
      await outbox.add(tx, { key: 'K', type: 't', payload });
      await tx.query('COMMIT');
      tx.release();
    }
    await outbox.add(late, { key: 'K', type: 't', payload: 3 });
    await late.query('COMMIT');
    late.release();
    const publisher = new RecordingPublisher();
    const relay = outbox.relay({ publisher, batchSize: 2 });
    try {
      await pollUntil(relay, () => publisher.published.length >= 3);
      for (let i = 0; i < 3; i++) await relay.poll();
    } finally {
      await relay.stop();
    }
    assert.deepEqual(
      publisher.published.map((m) => `${m.key}#${m.seq}`),
      ['K#1', 'K#2', 'K#3'],
    );
  });

  it('keeps per-key order through 400 concurrent writers (some rolled back), woken by NOTIFY', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'busy_outbox', partitions: 4 });
    await outbox.createTables();
    const publisher = new RecordingPublisher();
    const listener = await db.newPool(1).connect();
    const relay = outbox.relay({ publisher, listener, pollMs: 5000, batchSize: 50 }).start();
    const expected = new Map<string, number>();
    const writers = db.newPool(16);
    await Promise.all(
      Array.from({ length: 400 }, async (_, i) => {
        const key = `order-${i % 20}`;
        await transaction(writers, async (tx) => {
          const m = await outbox.add(tx, { key, type: 'event', payload: { i } });
          if (i % 7 === 0) throw new Error('rolled back');
          return m;
        }).then(
          () => expected.set(key, (expected.get(key) ?? 0) + 1),
          () => undefined,
        );
      }),
    );
    await relay.flush();
    await relay.stop();
    listener.release();
    const applied: Applied[] = publisher.published.map((m) => ({ key: m.key, seq: m.seq }));
    const verdict = checkHistory(applied, expected);
    assert.ok(clean(verdict), verdict.examples.join('; '));
    assert.equal(applied.length, 400 - Math.ceil(400 / 7));
  });

  it('retries a batch the broker refused, and two relays split the partitions, one taking over when the other dies', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'ha_outbox', partitions: 4 });
    await outbox.createTables();
    for (let i = 0; i < 40; i++) await outbox.add(db.pool, { key: `k${i}`, type: 't', payload: i });
    const p1 = new RecordingPublisher();
    const p2 = new RecordingPublisher();
    p1.failNext = 1;
    const events: RelayEvent[] = [];
    const r1 = outbox.relay({ publisher: p1, pollMs: 50, onEvent: (e) => events.push(e) }).start();
    await r1.flush();
    assert.ok(
      events.some((e) => e.type === 'error'),
      'the refused batch was reported',
    );
    assert.deepEqual([...r1.partitions], [0, 1, 2, 3]);
    const r2 = outbox.relay({ publisher: p2, pollMs: 50 }).start();
    for (let i = 40; i < 60; i++)
      await outbox.add(db.pool, { key: `k${i}`, type: 't', payload: i });
    await r1.flush();
    assert.deepEqual([...r2.partitions], [], 'a held partition is not taken');
    await r1.stop(); // frees its partitions
    for (let i = 60; i < 80; i++)
      await outbox.add(db.pool, { key: `k${i}`, type: 't', payload: i });
    await r2.flush();
    await r2.stop();
    const keys = new Set([...p1.published, ...p2.published].map((m) => m.key));
    assert.equal(keys.size, 80, 'every message published');
    assert.ok(
      p2.published.some((m) => Number(m.payload) >= 60),
      'the second relay took over',
    );
  });

  it('purges published messages only, and rejects bad input before writing', async () => {
    const outbox = new PostgresOutbox({ client: db.pool, table: 'purge_outbox', partitions: 1 });
    await outbox.createTables();
    await outbox.add(db.pool, { key: 'x', type: 't', payload: 1 });
    const recorded = new RecordingPublisher();
    const relay = outbox.relay({ publisher: recorded });
    await pollUntil(relay, () => recorded.published.length >= 1);
    await relay.stop();
    await outbox.add(db.pool, { key: 'x', type: 't', payload: 2 }); // not yet published
    await db.pool.query("UPDATE purge_outbox SET created_at = now() - interval '1 hour'");
    assert.equal(await outbox.purge({ olderThanMs: 60_000 }), 1);
    const { rows } = await db.pool.query('SELECT seq FROM purge_outbox');
    assert.deepEqual(
      rows.map((r) => Number(r.seq)),
      [2],
    );
    await assert.rejects(outbox.add(db.pool, { key: '', type: 't', payload: 1 }), /entry\.key/);
    await assert.rejects(
      outbox.add(db.pool, { key: 'x', type: 't', payload: 1, headers: { n: 1 as never } }),
      /entry\.headers\.n must be a string/,
    );
    assert.throws(
      () => new PostgresOutbox({ client: db.pool, partitions: 0 }),
      InvalidArgumentError,
    );
    assert.throws(
      () => outbox.relay({ publisher: new RecordingPublisher(), poll: 5 } as never),
      /options\.poll must be one of the options/,
    );
    const { rows: after } = await db.pool.query('SELECT count(*)::int AS n FROM purge_outbox');
    assert.equal(after[0].n, 1, 'nothing written by the refused calls');
  });
});

describe('PostgresInbox', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(20);
    await db.pool.query('CREATE TABLE balances (key text PRIMARY KEY, total bigint NOT NULL)');
  });
  after(() => db.close());

  const message = (key: string, seq: number): Message => ({
    id: `${key}:${seq}`,
    key,
    seq,
    type: 'credit',
    payload: { amount: seq },
    headers: {},
  });

  it('applies each message once, in order, under three concurrent redeliveries of every message', async () => {
    const inbox = new PostgresInbox({ client: db.pool, consumer: 'billing' });
    await inbox.createTable();
    const keys = Array.from({ length: 20 }, (_, k) => `acct-${k}`);
    const processes = [db.newPool(5), db.newPool(5), db.newPool(5)].map(
      (pool) => new PostgresInbox({ client: pool, consumer: 'billing' }),
    );
    const outcomes = { applied: 0, duplicate: 0, gap: 0 };
    await Promise.all(
      processes.map(async (process) => {
        for (let seq = 1; seq <= 10; seq++) {
          await Promise.all(
            keys.map(async (key) => {
              for (;;) {
                try {
                  const r = await process.apply(message(key, seq), (tx) =>
                    tx.query(
                      `INSERT INTO balances VALUES ($1, $2)
                       ON CONFLICT (key) DO UPDATE SET total = balances.total + $2`,
                      [key, seq],
                    ),
                  );
                  outcomes[r.applied ? 'applied' : 'duplicate']++;
                  return;
                } catch (error) {
                  if (!(error instanceof InboxGapError)) throw error;
                  outcomes.gap++; // another process is applying the predecessor: retry
                }
              }
            }),
          );
        }
      }),
    );
    assert.equal(outcomes.applied, 200);
    assert.equal(outcomes.duplicate, 400);
    const { rows } = await db.pool.query('SELECT total FROM balances');
    assert.ok(
      rows.every((r) => Number(r.total) === 55),
      'each credit applied exactly once',
    );
    assert.equal(await inbox.lastApplied('acct-3'), 10);
  });

  it('control: the same redeliveries without the inbox credit three times', async () => {
    await db.pool.query(
      'CREATE TABLE plain_balances (key text PRIMARY KEY, total bigint NOT NULL)',
    );
    await Promise.all(
      [1, 2, 3].map(async () => {
        for (let seq = 1; seq <= 10; seq++) {
          await db.pool.query(
            `INSERT INTO plain_balances VALUES ('k', $1)
             ON CONFLICT (key) DO UPDATE SET total = plain_balances.total + $1`,
            [seq],
          );
        }
      }),
    );
    const { rows } = await db.pool.query('SELECT total FROM plain_balances');
    assert.equal(Number(rows[0].total), 165);
  });

  it('drives an ordered consumer: a restarted consumer resumes where the inbox says, and a failure rolls back both', async () => {
    const inbox = new PostgresInbox({ client: db.pool, consumer: 'shipping' });
    await inbox.createTable();
    await db.pool.query('CREATE TABLE shipments (key text, seq int)');
    let failOnce = true;
    const handler = inbox.handler(async (m, tx) => {
      await tx.query('INSERT INTO shipments VALUES ($1, $2)', [m.key, m.seq]);
      if (m.seq === 3 && failOnce) {
        failOnce = false;
        throw new Error('label printer jammed');
      }
    });
    const deliveries = (consumer: OrderedConsumer, seqs: number[]) =>
      Promise.all(
        seqs.map((seq) =>
          consumer.deliver({
            message: message('parcel', seq),
            ack: () => undefined,
            requeue: () => undefined,
            deadLetter: () => undefined,
          }),
        ),
      );
    const first = new OrderedConsumer({
      progress: inbox,
      handler,
      backoff: { baseDelayMs: 1, maxDelayMs: 2 },
    });
    await deliveries(first, [2, 1, 3]);
    await first.drained();
    await first.close();
    // A new process (new consumer, same inbox table) gets everything again, plus 4.
    const second = new OrderedConsumer({
      progress: new PostgresInbox({ client: db.pool, consumer: 'shipping' }),
      handler,
    });
    await deliveries(second, [1, 2, 3, 4]);
    await second.drained();
    await second.close();
    const { rows } = await db.pool.query('SELECT seq FROM shipments ORDER BY seq');
    assert.deepEqual(
      rows.map((r) => r.seq),
      [1, 2, 3, 4],
    );
  });

  it('refuses a message ahead of its predecessor without writing, and bad options at construction', async () => {
    const inbox = new PostgresInbox({ client: db.pool, consumer: 'audit' });
    await inbox.createTable();
    await assert.rejects(
      inbox.apply(message('k', 2), async () => assert.fail('must not run')),
      (error: unknown) =>
        error instanceof InboxGapError && error.lastApplied === 0 && error.seq === 2,
    );
    assert.equal(await inbox.lastApplied('k'), 0);
    assert.throws(() => new PostgresInbox({ client: db.pool, consumer: '' }), /options\.consumer/);
    assert.throws(
      () => new PostgresInbox({ client: {} as never, consumer: 'x' }),
      /options\.client must be a pg Pool/,
    );
    // The old name and a misspelling are refused, not ignored.
    assert.throws(
      () => new PostgresInbox({ db: db.pool, consumer: 'x' } as never),
      /options\.db must be unset: it is called client/,
    );
    assert.throws(
      () => new PostgresOutbox({ client: db.pool, tabel: 'x' } as never),
      /options\.tabel .*one of the options/,
    );
  });
});
