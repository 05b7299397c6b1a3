/**
 * What per-key order and exactly-once effects cost, side by side in one run,
 * on RabbitMQ and NATS JetStream. Every variant's handler does the same work,
 * one PostgreSQL `UPDATE` of the entity the message names:
 *
 * - `unordered`: a plain consumer, the same number of handlers in flight,
 *   ack after the handler; no ordering, no deduplication (the baseline);
 * - `ordered`: raceguard's `OrderedConsumer` with in-memory progress;
 * - `inbox`: the `OrderedConsumer` with the `PostgresInbox`, the UPDATE and
 *   the inbox record in one transaction (as a user would write it).
 *
 * The messages are published first; the clock runs from the consumer's
 * start to the last message handled. Then the relay: the outbox relay
 * publishing the same number of committed rows to RabbitMQ, beside a naive
 * relay that polls `id > last_seen` (which can lose late commits; here no
 * writer runs, so it loses nothing and is the floor of a relay).
 *
 *   npm run bench:ordering [-- --messages 4000 --keys 1,16,256 --brokers rabbitmq,nats --json]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { connect, headers } from 'nats';
import pg from 'pg';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import {
  OrderedConsumer,
  decodeMessage,
  type Message,
} from '../packages/raceguard/dist/messaging/index.js';
import {
  consumeJetStream,
  ensureStream,
  JetStreamPublisher,
} from '../packages/raceguard/dist/nats/index.js';
import { PostgresInbox, PostgresOutbox } from '../packages/raceguard/dist/postgres/index.js';
import {
  consumeOrdered,
  declareTopology,
  RabbitPublisher,
} from '../packages/raceguard/dist/rabbitmq/index.js';
import {
  reachable,
  startNatsServer,
  startRabbitMqServer,
  createScratchSchema,
  type BrokerServer,
} from '../packages/raceguard/dist/testing/index.js';
import { median } from './stats.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '4000' },
    keys: { type: 'string', default: '1,16,256' },
    brokers: { type: 'string', default: 'rabbitmq,nats' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    'relay-messages': { type: 'string', default: '20000' },
    json: { type: 'boolean', default: false },
  },
});
const total = Number(args.messages);
const keyCounts = args.keys.split(',').map(Number);
const brokers = args.brokers.split(',') as ('rabbitmq' | 'nats')[];
const concurrency = Number(args.concurrency);
const rounds = Number(args.rounds);
const relayTotal = Number(args['relay-messages']);
const PARTITIONS = 8;
const log = (line: string): void => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

const started: BrokerServer[] = [];
const amqpUrl =
  process.env.AMQP_URL ??
  ((await reachable(5672))
    ? 'amqp://guest:guest@127.0.0.1:5672'
    : (started[started.push(await startRabbitMqServer()) - 1] as BrokerServer).url);
const natsUrl =
  process.env.NATS_URL ??
  ((await reachable(4222))
    ? 'nats://127.0.0.1:4222'
    : (started[started.push(await startNatsServer()) - 1] as BrokerServer).url);
const postgres = await benchPostgres();
process.stderr.write(`${describeServer(await serverSettings(postgres))}
`);
const admin = new pg.Pool({ connectionString: postgres.url, max: 2 });
const schema = await createScratchSchema(admin, 'rg_bench_ordering');
const pool = new pg.Pool({
  connectionString: postgres.url,
  max: concurrency + 4,
  options: schema.connectionOptions,
});
pool.on('error', () => undefined);

function messagesFor(keys: number): Message[] {
  const list: Message[] = [];
  const next = new Array<number>(keys).fill(0);
  for (let i = 0; i < total; i++) {
    const k = i % keys;
    const seq = (next[k] = (next[k] ?? 0) + 1);
    const key = `entity-${k}`;
    list.push({ id: `${key}:${seq}`, key, seq, type: 'bump', payload: { k }, headers: {} });
  }
  return list;
}

async function resetEntities(keys: number): Promise<void> {
  await pool.query('DROP TABLE IF EXISTS entities, raceguard_inbox');
  await pool.query('CREATE TABLE entities (key text PRIMARY KEY, n bigint NOT NULL)');
  await pool.query(
    `INSERT INTO entities SELECT 'entity-' || i, 0 FROM generate_series(0, $1 - 1) AS i`,
    [keys],
  );
}

const UPDATE = 'UPDATE entities SET n = n + 1 WHERE key = $1';

/** Counts handled messages; resolves when all are. */
function tracker() {
  const latencies: number[] = [];
  let handled = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    latencies,
    done,
    record(receivedAt: number) {
      latencies.push(performance.now() - receivedAt);
      if (++handled === total) finish();
    },
  };
}

/** A semaphore: at most `concurrency` handlers at once (the plain consumer's limit). */
function limiter(limit: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

type Variant = 'unordered' | 'ordered' | 'inbox';

async function runRabbit(variant: Variant, keys: number) {
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', () => undefined);
  const name = `bench_${randomBytes(3).toString('hex')}`;
  const topology = { exchange: name, queue: name, partitions: PARTITIONS };
  const channel = await connection.createChannel();
  await declareTopology(channel, topology);
  const publisher = new RabbitPublisher({
    channel: await connection.createConfirmChannel(),
    topology,
  });
  const list = messagesFor(keys);
  for (let i = 0; i < list.length; i += 1000) await publisher.publish(list.slice(i, i + 1000));
  const track = tracker();
  const begin = performance.now();
  const consumeChannel = await connection.createChannel();
  const prefetch = Math.ceil(800 / PARTITIONS);
  let close: () => Promise<unknown>;
  if (variant === 'unordered') {
    await consumeChannel.prefetch(prefetch);
    const limit = limiter(concurrency);
    for (let p = 0; p < PARTITIONS; p++) {
      await consumeChannel.consume(`${name}.${p}`, (raw) => {
        if (raw === null) return;
        const receivedAt = performance.now();
        const m = decodeMessage({
          body: raw.content,
          headers: raw.properties.headers as Record<string, string>,
        });
        void limit(() => pool.query(UPDATE, [m.key])).then(() => {
          consumeChannel.ack(raw);
          track.record(receivedAt);
        });
      });
    }
    close = () => consumeChannel.close();
  } else {
    const consumer = orderedConsumer(variant, name, track);
    const subscription = await consumeOrdered(consumeChannel, {
      topology,
      consumer: consumer.consumer,
      prefetch,
    });
    close = () => subscription.close();
  }
  await track.done;
  const elapsed = performance.now() - begin;
  await close();
  for (let p = 0; p < PARTITIONS; p++)
    await channel.deleteQueue(`${name}.${p}`).catch(() => undefined);
  await channel.deleteQueue(`${name}.dead`).catch(() => undefined);
  await channel.deleteExchange(name).catch(() => undefined);
  await channel.deleteExchange(`${name}.dead`).catch(() => undefined);
  await connection.close();
  return { elapsed, latencies: track.latencies };
}

/** The ordered variants: the handler stamps the delivery time from the received map. */
function orderedConsumer(
  variant: Exclude<Variant, 'unordered'>,
  name: string,
  track: ReturnType<typeof tracker>,
) {
  const receivedAt = new Map<string, number>();
  const inbox = new PostgresInbox({ client: pool, consumer: name });
  const consumer = new OrderedConsumer({
    concurrency,
    maxBuffered: 1000,
    ...(variant === 'inbox' && { progress: inbox }),
    handler:
      variant === 'inbox'
        ? inbox.handler(async (m, tx) => {
            await tx.query(UPDATE, [m.key]);
            track.record(receivedAt.get(m.id) ?? performance.now());
          })
        : async (m) => {
            await pool.query(UPDATE, [m.key]);
            track.record(receivedAt.get(m.id) ?? performance.now());
          },
  });
  // Deliveries are stamped when taken; wrap deliver() to record the time.
  const deliver = consumer.deliver.bind(consumer);
  consumer.deliver = (delivery) => {
    receivedAt.set(delivery.message.id, performance.now());
    return deliver(delivery);
  };
  return { consumer, inbox };
}

async function runNats(variant: Variant, keys: number) {
  const nc = await connect({ servers: natsUrl });
  const jsm = await nc.jetstreamManager();
  const name = `bench_${randomBytes(3).toString('hex')}`;
  const topology = { stream: name, subjectPrefix: name, partitions: PARTITIONS };
  await ensureStream(jsm, topology);
  const publisher = new JetStreamPublisher({ jetstream: nc.jetstream(), topology, headers });
  const list = messagesFor(keys);
  for (let i = 0; i < list.length; i += 1000) await publisher.publish(list.slice(i, i + 1000));
  const track = tracker();
  const maxAckPending = Math.ceil(800 / PARTITIONS);
  const begin = performance.now();
  let close: () => Promise<unknown>;
  if (variant === 'unordered') {
    const limit = limiter(concurrency);
    const streams: { close(): Promise<unknown> }[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      await jsm.consumers.add(name, {
        durable_name: `plain-${p}`,
        ack_policy: 'explicit' as never,
        filter_subject: `${name}.${p}`,
        max_ack_pending: maxAckPending,
      });
      const messages = await (
        await nc.jetstream().consumers.get(name, `plain-${p}`)
      ).consume({
        max_messages: maxAckPending,
      });
      streams.push(messages);
      void (async () => {
        for await (const raw of messages) {
          const receivedAt = performance.now();
          const wire: Record<string, string> = {};
          for (const k of raw.headers?.keys() ?? []) wire[k] = raw.headers?.get(k) ?? '';
          const m = decodeMessage({ body: raw.data, headers: wire });
          void limit(() => pool.query(UPDATE, [m.key])).then(() => {
            raw.ack();
            track.record(receivedAt);
          });
        }
      })();
    }
    close = () => Promise.all(streams.map((s) => s.close()));
  } else {
    const { consumer } = orderedConsumer(variant, name, track);
    const subscription = await consumeJetStream(nc.jetstream(), {
      topology,
      durable: 'ordered',
      consumer,
      manager: jsm,
      headers,
      maxAckPending,
    });
    close = () => subscription.close();
  }
  await track.done;
  const elapsed = performance.now() - begin;
  await close();
  await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
  return { elapsed, latencies: track.latencies };
}

interface Result {
  broker: string;
  variant: string;
  keys: number;
  messagesPerSec: number;
  p99Ms: number;
  ratioToUnordered: number | null;
}
const results: Result[] = [];

/**
 * The database's floor for the two handler shapes, without any broker: 16
 * clients doing one autocommit UPDATE each (what `unordered` and `ordered`
 * handlers do) against doing the inbox's transaction (BEGIN, the inbox
 * UPDATE, the entity UPDATE, COMMIT). Their ratio bounds `inbox` / `unordered`.
 */
async function databaseFloor(keys: number): Promise<{ autocommit: number; inboxTx: number }> {
  await resetEntities(keys);
  await new PostgresInbox({ client: pool, consumer: 'floor' }).createTable();
  await pool.query(
    `INSERT INTO raceguard_inbox (consumer, key, last_seq) SELECT 'floor', 'entity-' || i, 0 FROM generate_series(0, $1 - 1) AS i`,
    [keys],
  );
  const measure = async (work: (key: string, seq: number) => Promise<unknown>): Promise<number> => {
    let next = 0;
    const begin = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < total; i = next++) {
          await work(`entity-${i % keys}`, Math.floor(i / keys) + 1);
        }
      }),
    );
    return (total / (performance.now() - begin)) * 1000;
  };
  const autocommit = await measure((key) => pool.query(UPDATE, [key]));
  const inboxTx = await measure(async (key) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `UPDATE raceguard_inbox SET last_seq = last_seq + 1, updated_at = now() WHERE consumer = 'floor' AND key = $1`,
        [key],
      );
      await client.query(UPDATE, [key]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  });
  return { autocommit, inboxTx };
}

for (const keys of keyCounts) {
  const floor = await databaseFloor(keys);
  results.push({
    broker: 'postgres',
    variant: 'floor-autocommit-update',
    keys,
    messagesPerSec: Math.round(floor.autocommit),
    p99Ms: 0,
    ratioToUnordered: 1,
  });
  results.push({
    broker: 'postgres',
    variant: 'floor-inbox-transaction',
    keys,
    messagesPerSec: Math.round(floor.inboxTx),
    p99Ms: 0,
    ratioToUnordered: Math.round((floor.inboxTx / floor.autocommit) * 100) / 100,
  });
  log(
    `postgres floor ${keys} keys: ${Math.round(floor.autocommit)} autocommit UPDATE/s, ${Math.round(floor.inboxTx)} inbox transactions/s`,
  );
}

for (const broker of brokers) {
  for (const keys of keyCounts) {
    // Rounds interleave the variants, so that drift hits them alike; medians reported.
    const rates: Record<Variant, number[]> = { unordered: [], ordered: [], inbox: [] };
    const p99s: Record<Variant, number[]> = { unordered: [], ordered: [], inbox: [] };
    for (let round = 0; round < rounds; round++) {
      for (const variant of ['unordered', 'ordered', 'inbox'] as const) {
        await resetEntities(keys);
        if (variant === 'inbox')
          await new PostgresInbox({ client: pool, consumer: 'x' }).createTable();
        const { elapsed, latencies } = await (broker === 'rabbitmq' ? runRabbit : runNats)(
          variant,
          keys,
        );
        const { rows } = await pool.query<{ n: string }>('SELECT sum(n)::text AS n FROM entities');
        if (Number(rows[0]?.n) < total)
          throw new Error(`${broker} ${variant}: only ${rows[0]?.n} updates`);
        rates[variant].push((total / elapsed) * 1000);
        p99s[variant].push(percentile(latencies, 99));
      }
    }
    const unorderedRate = median(rates.unordered);
    for (const variant of ['unordered', 'ordered', 'inbox'] as const) {
      const rate = median(rates[variant]);
      const result: Result = {
        broker,
        variant,
        keys,
        messagesPerSec: Math.round(rate),
        p99Ms: Math.round(median(p99s[variant]) * 10) / 10,
        ratioToUnordered: Math.round((rate / unorderedRate) * 100) / 100,
      };
      results.push(result);
      log(
        `${broker} ${variant} ${keys} keys: ${result.messagesPerSec} msg/s (${result.ratioToUnordered}×)`,
      );
    }
  }
}

// The relay: committed outbox rows to RabbitMQ, raceguard's relay beside a
// naive id-polling one. Each run publishes into fresh queues (a deeper queue
// is slower), and the order of the two alternates between rounds.
{
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  const confirm = await connection.createConfirmChannel();
  const relayRates: Record<'naive-relay' | 'raceguard-relay', number[]> = {
    'naive-relay': [],
    'raceguard-relay': [],
  };
  for (let round = 0; round < rounds; round++) {
    const order = ['naive-relay', 'raceguard-relay'] as const;
    for (const variant of round % 2 === 0 ? order : [...order].reverse()) {
      const name = `bench_relay_${randomBytes(3).toString('hex')}`;
      const topology = { exchange: name, queue: name, partitions: PARTITIONS };
      await declareTopology(channel, topology);
      const publisher = new RabbitPublisher({ channel: confirm, topology });
      const table = `outbox_${name}`;
      const outbox = new PostgresOutbox({
        client: pool,
        table,
        partitions: PARTITIONS,
        notify: false,
      });
      await outbox.createTables();
      // The raceguard relay connects and claims its partitions (on an empty outbox) before the clock starts.
      const relay = outbox.relay({ publisher, batchSize: 500 });
      if (variant === 'raceguard-relay') await relay.poll();
      await pool.query(
        `INSERT INTO ${table} (partition, key, seq, message_id, type, payload)
         SELECT i % ${PARTITIONS}, 'entity-' || (i % 256), i / 256 + 1, 'entity-' || (i % 256) || ':' || (i / 256 + 1), 'bump', '{}'::jsonb
         FROM generate_series(0, $1 - 1) AS i`,
        [relayTotal],
      );
      const begin = performance.now();
      if (variant === 'naive-relay') {
        let last = 0;
        for (;;) {
          const { rows } = await pool.query<{
            id: string;
            key: string;
            seq: string;
            message_id: string;
            payload: unknown;
          }>(
            `SELECT id, key, seq, message_id, payload FROM ${table} WHERE id > $1 ORDER BY id LIMIT 500`,
            [last],
          );
          if (rows.length === 0) break;
          await publisher.publish(
            rows.map((r) => ({
              id: r.message_id,
              key: r.key,
              seq: Number(r.seq),
              type: 'bump',
              payload: r.payload,
              headers: {},
            })),
          );
          last = Number(rows[rows.length - 1]?.id);
        }
      } else {
        while ((await relay.poll()) > 0);
      }
      relayRates[variant].push((relayTotal / (performance.now() - begin)) * 1000);
      await relay.stop();
      await pool.query(`DROP TABLE ${table}, ${table}_keys, ${table}_cursors`);
      for (let p = 0; p < PARTITIONS; p++)
        await channel.deleteQueue(`${name}.${p}`).catch(() => undefined);
      await channel.deleteQueue(`${name}.dead`).catch(() => undefined);
      await channel.deleteExchange(name).catch(() => undefined);
      await channel.deleteExchange(`${name}.dead`).catch(() => undefined);
    }
  }
  const naive = median(relayRates['naive-relay']);
  for (const variant of ['naive-relay', 'raceguard-relay'] as const) {
    const rate = median(relayRates[variant]);
    results.push({
      broker: 'rabbitmq',
      variant,
      keys: 256,
      messagesPerSec: Math.round(rate),
      p99Ms: 0,
      // For the relays: the ratio to the naive relay.
      ratioToUnordered: Math.round((rate / naive) * 100) / 100,
    });
    log(`relay ${variant}: ${Math.round(rate)} msg/s (${(rate / naive).toFixed(2)}× naive)`);
  }
  await connection.close();
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      ['broker', 'variant', 'keys', 'msg/s', '× unordered (relays: × naive)', 'p99 ms'],
      results.map((r) => [
        r.broker,
        r.variant,
        String(r.keys),
        String(r.messagesPerSec),
        r.ratioToUnordered === null ? '-' : r.ratioToUnordered.toFixed(2),
        r.p99Ms === 0 ? '-' : r.p99Ms.toFixed(1),
      ]),
    )}\n`,
  );
}
await pool.end();
await schema.drop();
await admin.end();
await postgres.stop();
for (const server of started) await server.stop();
