/**
 * Order events: every order's `created`, `paid` and `shipped` events are
 * published at once by the services that produce them (so `paid` can
 * overtake `created`), 10% of them twice (a producer's retry, a broker's
 * redelivery), and consumed by eight workers whose handlers fail now and
 * then (redelivery reorders). Unsafe, a `paid` that arrives first updates
 * no order and is lost, and a duplicate `paid` charges twice; the ordered
 * consumer applies each order's events in order, once; with the inbox, once
 * even across crashes.
 */
import { randomBytes } from 'node:crypto';
import { headers, type JsMsg } from 'nats';
import { KeyedMutex } from 'raceguard/local';
import {
  OrderedConsumer,
  decodeMessage,
  type ConsumerEvent,
  type Message,
} from 'raceguard/messaging';
import { consumeJetStream, ensureStream, JetStreamPublisher } from 'raceguard/nats';
import { PostgresInbox, type PoolLike, type Queryable } from 'raceguard/postgres';
import type { MessageScenario, MessageTrial, MessageTrialContext } from '../message-scenario.js';
import { countAnomaly, scalar } from '../scenario.js';
import { postgresDb } from '../sql.js';

const EVENTS = ['created', 'paid', 'shipped'] as const;
const PARTITIONS = 8;

/** The business logic, written once: what each event does to the order. */
async function apply(db: Queryable, message: Message, lost: { count: number }): Promise<void> {
  const id = message.key;
  if (message.type === 'created') {
    await db.query(
      `INSERT INTO lab_orders (id, status) VALUES ($1, 'created') ON CONFLICT DO NOTHING`,
      [id],
    );
  } else if (message.type === 'paid') {
    const { rowCount } = await db.query(
      `UPDATE lab_orders SET status = 'paid' WHERE id = $1 AND status = 'created'`,
      [id],
    );
    if (rowCount === 0) lost.count++; // updated before created: the payment is lost
    await db.query('INSERT INTO lab_charges (order_id) VALUES ($1)', [id]);
  } else {
    const { rowCount } = await db.query(
      `UPDATE lab_orders SET status = 'shipped' WHERE id = $1 AND status = 'paid'`,
      [id],
    );
    if (rowCount === 0) lost.count++;
  }
}

/** The trial's events, shuffled (concurrent producers), 10% published twice. */
function eventsOf(keys: number, run: string): Message[] {
  const events: Message[] = [];
  for (let k = 0; k < keys; k++) {
    const key = `${run}-order-${k}`;
    EVENTS.forEach((type, i) =>
      events.push({
        id: `${key}:${i + 1}`,
        key,
        seq: i + 1,
        type,
        payload: { order: k },
        headers: {},
      }),
    );
  }
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [events[i], events[j]] = [events[j] as Message, events[i] as Message];
  }
  const duplicates = events.filter(() => Math.random() < 0.1);
  return [...events, ...duplicates];
}

async function check(pool: PoolLike, lost: number): Promise<Record<string, number>> {
  const anomalies: Record<string, number> = {};
  countAnomaly(anomalies, 'updated-before-created', lost);
  countAnomaly(
    anomalies,
    'double-applied',
    await scalar(
      postgresDb(pool),
      'SELECT count(*) FROM (SELECT order_id FROM lab_charges GROUP BY order_id HAVING count(*) > 1) AS twice',
    ),
  );
  countAnomaly(
    anomalies,
    'not-shipped',
    await scalar(postgresDb(pool), `SELECT count(*) FROM lab_orders WHERE status <> 'shipped'`),
  );
  return anomalies;
}

/** What one trial counts while its workers run. */
class TrialTally {
  readonly lost = { count: 0 };
  readonly latenciesMs: number[] = [];
  settled = 0;
  applied = 0;
  duplicates = 0;
  retries = 0;
  /** Resolves when every published event settled (or the trial gives up waiting). */
  readonly done: Promise<void>;
  finish: () => void = () => undefined;
  readonly #expected: number;
  readonly #flaky: Set<string>;

  constructor(published: readonly Message[]) {
    this.#expected = published.length;
    this.done = new Promise<void>((resolve) => (this.finish = resolve));
    // A handler fails on 10% of first attempts: the broker (unsafe) or the consumer retries it.
    this.#flaky = new Set(published.filter(() => Math.random() < 0.1).map((m) => m.id));
  }

  /** An event applied or recognised as a duplicate, taken at `takenAt`. */
  settle(takenAt: number): void {
    this.latenciesMs.push(performance.now() - takenAt);
    if (++this.settled === this.#expected) this.finish();
  }

  /** Throw for a flaky event's first attempt. */
  maybeFail(m: Message): void {
    if (this.#flaky.delete(m.id)) throw new Error('the payment service timed out');
  }
}

async function runTrial(context: MessageTrialContext): Promise<MessageTrial> {
  const { pool, broker, strategy, keys } = context;
  const run = randomBytes(3).toString('hex');
  const stream = `lab_orders_${run}`;
  const topology = { stream, subjectPrefix: stream, partitions: PARTITIONS };
  const manager = await broker.nats.jetstreamManager();
  await ensureStream(manager, topology);
  const published = eventsOf(keys, run);
  const tally = new TrialTally(published);
  const stops: (() => Promise<unknown>)[] = [];
  const started = performance.now();
  try {
    if (strategy === 'unsafe') await startPlainWorkers(context, stream, tally, stops);
    else await startOrderedWorkers(context, topology, tally, stops);
    const publisher = new JetStreamPublisher({
      jetstream: broker.nats.jetstream(),
      topology,
      headers,
    });
    // Distinct ids for the duplicates: the broker must not drop them (a producer retry after a lost ack would not).
    await publisher.publish(
      published.map((m, i) => (i >= keys * 3 ? { ...m, id: `${m.id}:again` } : m)),
    );
    const timeout = setTimeout(() => tally.finish(), 60_000);
    await tally.done;
    clearTimeout(timeout);
    const durationMs = performance.now() - started;
    for (const stop of stops) await stop().catch(() => undefined);
    const anomalies = await check(pool, tally.lost.count);
    if (tally.settled < published.length)
      countAnomaly(anomalies, 'unfinished', published.length - tally.settled);
    return {
      anomalies,
      applied: tally.applied,
      duplicates: tally.duplicates,
      retries: tally.retries,
      deliveries: published.length,
      latenciesMs: tally.latenciesMs,
      durationMs,
    };
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
    await manager.streams.delete(stream).catch(() => undefined);
  }
}

/** `unsafe`: plain workers share each partition's durable, apply on receipt, ack after. */
async function startPlainWorkers(
  { pool, broker, workers }: MessageTrialContext,
  stream: string,
  tally: TrialTally,
  stops: (() => Promise<unknown>)[],
): Promise<void> {
  const manager = await broker.nats.jetstreamManager();
  for (let p = 0; p < PARTITIONS; p++) {
    await manager.consumers.add(stream, {
      durable_name: `plain-${p}`,
      ack_policy: 'explicit' as never,
      filter_subject: `${stream}.${p}`,
      max_ack_pending: 1000,
    });
  }
  for (let w = 0; w < workers; w++) {
    for (let p = 0; p < PARTITIONS; p++) {
      const durable = await broker.nats.jetstream().consumers.get(stream, `plain-${p}`);
      const messages = await durable.consume({ max_messages: 50 });
      stops.push(() => messages.close());
      void (async () => {
        for await (const raw of messages as AsyncIterable<JsMsg>) {
          const takenAt = performance.now();
          const wire: Record<string, string> = {};
          for (const k of raw.headers?.keys() ?? []) wire[k] = raw.headers?.get(k) ?? '';
          const m = decodeMessage({ body: raw.data, headers: wire });
          try {
            tally.maybeFail(m);
            await apply(pool, m, tally.lost);
            tally.applied++;
            raw.ack();
            tally.settle(takenAt);
          } catch {
            tally.retries++;
            raw.nak(); // redelivered later, behind what came after it
          }
        }
      })();
    }
  }
}

/** The fixes: workers that are each an ordered consumer; one owns a partition at a time. */
async function startOrderedWorkers(
  { pool, broker, strategy, workers }: MessageTrialContext,
  topology: {
    readonly stream: string;
    readonly subjectPrefix: string;
    readonly partitions: number;
  },
  tally: TrialTally,
  stops: (() => Promise<unknown>)[],
): Promise<void> {
  const manager = await broker.nats.jetstreamManager();
  const partitionLocks = new KeyedMutex();
  const inbox = new PostgresInbox({ client: pool, consumer: topology.stream });
  const takenAt = new Map<string, number>();
  const onEvent = (event: ConsumerEvent): void => {
    if (event.type === 'applied' || event.type === 'duplicate') {
      if (event.type === 'applied') tally.applied++;
      else tally.duplicates++;
      tally.settle(takenAt.get(`${event.key}:${event.seq}`) ?? performance.now());
    } else if (event.type === 'retry') tally.retries++;
  };
  for (let w = 0; w < workers; w++) {
    const consumer = new OrderedConsumer({
      concurrency: 4,
      backoff: { baseDelayMs: 1, maxDelayMs: 10 },
      onEvent,
      ...(strategy === 'inbox' && { progress: inbox }),
      handler:
        strategy === 'inbox'
          ? inbox.handler(async (m, tx) => {
              tally.maybeFail(m);
              await apply(tx, m, tally.lost);
            })
          : async (m) => {
              tally.maybeFail(m);
              await apply(pool, m, tally.lost);
            },
    });
    const deliver = consumer.deliver.bind(consumer);
    consumer.deliver = (delivery) => {
      takenAt.set(delivery.message.id, performance.now());
      return deliver(delivery);
    };
    const subscription = await consumeJetStream(broker.nats.jetstream(), {
      topology,
      durable: 'ordered',
      consumer,
      manager,
      headers,
      locker: partitionLocks,
      claimEveryMs: 50,
    });
    stops.push(() => subscription.close());
  }
}

export const orderEvents: MessageScenario = {
  shape: 'messages',
  name: 'order-events',
  title: 'order events (created, paid, shipped) consumed by 8 workers',
  invariant:
    "each order's events apply in order and once: every order ends shipped, charged exactly once",
  strategies: ['unsafe', 'ordered-consumer', 'inbox'],
  async createSchema(pool) {
    await pool.query('DROP TABLE IF EXISTS lab_orders, lab_charges, raceguard_inbox');
    await pool.query('CREATE TABLE lab_orders (id text PRIMARY KEY, status text NOT NULL)');
    await pool.query('CREATE TABLE lab_charges (id bigserial PRIMARY KEY, order_id text NOT NULL)');
    await new PostgresInbox({ client: pool, consumer: 'lab' }).createTable();
  },
  async runTrial(context) {
    await context.pool.query('TRUNCATE lab_orders, lab_charges');
    return runTrial(context);
  },
};
