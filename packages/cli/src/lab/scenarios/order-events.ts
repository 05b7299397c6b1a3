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
import { note, scalar } from '../scenario.js';
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
  note(anomalies, 'updated-before-created', lost);
  note(
    anomalies,
    'double-applied',
    await scalar(
      postgresDb(pool),
      'SELECT count(*) FROM (SELECT order_id FROM lab_charges GROUP BY order_id HAVING count(*) > 1) AS twice',
    ),
  );
  note(
    anomalies,
    'not-shipped',
    await scalar(postgresDb(pool), `SELECT count(*) FROM lab_orders WHERE status <> 'shipped'`),
  );
  return anomalies;
}

async function runTrial(context: MessageTrialContext): Promise<MessageTrial> {
  const { pool, broker, strategy, keys, workers } = context;
  const run = randomBytes(3).toString('hex');
  const stream = `lab_orders_${run}`;
  const topology = { stream, subjectPrefix: stream, partitions: PARTITIONS };
  const manager = await broker.nats.jetstreamManager();
  await ensureStream(manager, topology);
  const published = eventsOf(keys, run);
  const lost = { count: 0 };
  const latenciesMs: number[] = [];
  let settled = 0;
  let applied = 0;
  let duplicates = 0;
  let retries = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const settle = (takenAt: number): void => {
    latenciesMs.push(performance.now() - takenAt);
    if (++settled === published.length) finish();
  };
  // A handler fails on 10% of first attempts: the broker (unsafe) or the consumer retries it.
  const flaky = new Set(published.filter(() => Math.random() < 0.1).map((m) => m.id));
  const maybeFail = (m: Message): void => {
    if (flaky.delete(m.id)) throw new Error('the payment service timed out');
  };
  const stops: (() => Promise<unknown>)[] = [];
  const started = performance.now();
  try {
    if (strategy === 'unsafe') {
      // Eight plain workers share each partition's durable: apply on receipt, ack after.
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
          const messages = await (
            await broker.nats.jetstream().consumers.get(stream, `plain-${p}`)
          ).consume({
            max_messages: 50,
          });
          stops.push(() => messages.close());
          void (async () => {
            for await (const raw of messages as AsyncIterable<JsMsg>) {
              const takenAt = performance.now();
              const wire: Record<string, string> = {};
              for (const k of raw.headers?.keys() ?? []) wire[k] = raw.headers?.get(k) ?? '';
              const m = decodeMessage({ body: raw.data, headers: wire });
              try {
                maybeFail(m);
                await apply(pool, m, lost);
                applied++;
                raw.ack();
                settle(takenAt);
              } catch {
                retries++;
                raw.nak(); // redelivered later, behind what came after it
              }
            }
          })();
        }
      }
    } else {
      // Eight workers, each an ordered consumer; one owns a partition at a time.
      const partitionLocks = new KeyedMutex();
      const inbox = new PostgresInbox({ db: pool, consumer: stream });
      const takenAt = new Map<string, number>();
      for (let w = 0; w < workers; w++) {
        const onEvent = (event: ConsumerEvent): void => {
          if (event.type === 'applied' || event.type === 'duplicate') {
            if (event.type === 'applied') applied++;
            else duplicates++;
            settle(takenAt.get(`${event.key}:${event.seq}`) ?? performance.now());
          } else if (event.type === 'retry') retries++;
        };
        const consumer = new OrderedConsumer({
          concurrency: 4,
          backoff: { baseDelayMs: 1, maxDelayMs: 10 },
          onEvent,
          ...(strategy === 'inbox' && { progress: inbox }),
          handler:
            strategy === 'inbox'
              ? inbox.handler(async (m, tx) => {
                  maybeFail(m);
                  await apply(tx, m, lost);
                })
              : async (m) => {
                  maybeFail(m);
                  await apply(pool, m, lost);
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
    const publisher = new JetStreamPublisher({
      jetstream: broker.nats.jetstream(),
      topology,
      headers,
    });
    // Distinct ids for the duplicates: the broker must not drop them (a producer retry after a lost ack would not).
    await publisher.publish(
      published.map((m, i) => (i >= keys * 3 ? { ...m, id: `${m.id}:again` } : m)),
    );
    const timeout = setTimeout(() => finish(), 60_000);
    await done;
    clearTimeout(timeout);
    const durationMs = performance.now() - started;
    for (const stop of stops) await stop().catch(() => undefined);
    const anomalies = await check(pool, lost.count);
    if (settled < published.length) note(anomalies, 'unfinished', published.length - settled);
    return {
      anomalies,
      applied,
      duplicates,
      retries,
      deliveries: published.length,
      latenciesMs,
      durationMs,
    };
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
    await manager.streams.delete(stream).catch(() => undefined);
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
    await new PostgresInbox({ db: pool, consumer: 'lab' }).createTable();
  },
  async runTrial(context) {
    await context.pool.query('TRUNCATE lab_orders, lab_charges');
    return runTrial(context);
  },
};
