/**
 * The whole message path under its adversary, end to end on a real broker
 * (RabbitMQ partition queues, or NATS JetStream): producers in PostgreSQL
 * transactions (some taking their xid early and committing late, several
 * keys per transaction, rollbacks and deadlock victims), the outbox relay
 * with tiny batches killed and restarted at random (a new relay: no
 * memory), ordered consumers applying through the inbox, killed and
 * restarted at random. Checked afterwards in the database: per key, every
 * committed message applied exactly once, in sequence order, with its own
 * payload, and nothing of a rolled-back transaction.
 */
import { randomBytes } from 'node:crypto';
import type amqp from 'amqplib';
import { headers, type NatsConnection } from 'nats';
import type pg from 'pg';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import { OrderedConsumer } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import {
  JetStreamPublisher,
  consumeJetStream,
  ensureStream,
} from '../../packages/raceguard/src/nats/jetstream.js';
import { PostgresInbox } from '../../packages/raceguard/src/postgres/messaging/inbox.js';
import {
  PostgresOutbox,
  type OutboxPublisher,
  type OutboxRelay,
} from '../../packages/raceguard/src/postgres/messaging/outbox.js';
import { consumeOrdered } from '../../packages/raceguard/src/rabbitmq/consumer.js';
import { RabbitPublisher } from '../../packages/raceguard/src/rabbitmq/publisher.js';
import { declareTopology } from '../../packages/raceguard/src/rabbitmq/topology.js';

export interface PipelineNemesisResult {
  readonly seed: number;
  readonly committed: number;
  readonly rolledBack: number;
  readonly relayKills: number;
  readonly consumerKills: number;
  readonly violations: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PARTITIONS = 4;

/** Where the messages go: a publisher for the relay, consumers to start and stop, clean-up. */
interface Broker {
  readonly publisher: OutboxPublisher;
  /** Start a consumer feeding `consumer`; resolves how to stop it. */
  consume(consumer: OrderedConsumer): Promise<() => Promise<void>>;
  cleanup(): Promise<void>;
}

async function rabbitBroker(connection: amqp.ChannelModel, name: string): Promise<Broker> {
  const topology = {
    exchange: name,
    queue: name,
    partitions: PARTITIONS,
    queueType: 'classic' as const,
  };
  const admin = await connection.createChannel();
  await declareTopology(admin, topology);
  const confirm = await connection.createConfirmChannel();
  return {
    publisher: new RabbitPublisher({ channel: confirm, topology }),
    async consume(consumer) {
      const channel = await connection.createChannel();
      const sub = await consumeOrdered(channel, { topology, consumer, prefetch: 20 });
      return async () => {
        await sub.close().catch(() => undefined);
        await channel.close().catch(() => undefined);
      };
    },
    async cleanup() {
      await confirm.close().catch(() => undefined);
      for (let p = 0; p < PARTITIONS; p++)
        await admin.deleteQueue(`${name}.${p}`).catch(() => undefined);
      await admin.deleteQueue(`${name}.dead`).catch(() => undefined);
      await admin.deleteExchange(name).catch(() => undefined);
      await admin.deleteExchange(`${name}.dead`).catch(() => undefined);
      await admin.close().catch(() => undefined);
    },
  };
}

async function natsBroker(nc: NatsConnection, name: string): Promise<Broker> {
  const topology = { stream: name, subjectPrefix: name, partitions: PARTITIONS };
  const manager = await nc.jetstreamManager();
  await ensureStream(manager, topology);
  return {
    publisher: new JetStreamPublisher({ jetstream: nc.jetstream(), topology, headers }),
    async consume(consumer) {
      const sub = await consumeJetStream(nc.jetstream(), {
        topology,
        durable: 'nemesis',
        consumer,
        manager,
        headers,
        maxAckPending: 50,
        ackWaitMs: 1000,
      });
      return () => sub.close().catch(() => undefined);
    },
    async cleanup() {
      await manager.streams.delete(name).catch(() => undefined);
    },
  };
}

/** One run over RabbitMQ (`{ rabbit }`) or NATS JetStream (`{ nats }`). */
export async function pipelineNemesis(
  pool: pg.Pool,
  connection: { readonly rabbit: amqp.ChannelModel } | { readonly nats: NatsConnection },
  options: { readonly seed: number; readonly durationMs: number; readonly keys?: number },
): Promise<PipelineNemesisResult> {
  const { seed } = options;
  const random = createRandom(seed);
  const name = `nemesis_${seed}_${randomBytes(3).toString('hex')}`;
  const broker =
    'rabbit' in connection
      ? await rabbitBroker(connection.rabbit, name)
      : await natsBroker(connection.nats, name);
  const outbox = new PostgresOutbox({
    client: pool,
    table: `${name}_outbox`,
    partitions: PARTITIONS,
    notify: false,
  });
  await outbox.createTables();
  const inbox = new PostgresInbox({ client: pool, consumer: name });
  await inbox.createTable();
  await pool.query(
    `CREATE TABLE ${name}_effects (id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, payload text NOT NULL)`,
  );

  const committed = new Map<string, string>();
  let rolledBack = 0;
  let relayKills = 0;
  let consumerKills = 0;
  const keyCount = options.keys ?? 12;
  const end = performance.now() + options.durationMs;

  const startRelay = (): OutboxRelay =>
    outbox
      .relay({
        publisher: broker.publisher,
        batchSize: 1 + random.int(5),
        pollMs: 10 + random.int(40),
      })
      .start();
  let relay = startRelay();

  const startConsumer = async (): Promise<() => Promise<void>> => {
    const consumer = new OrderedConsumer({
      progress: inbox,
      handler: inbox.handler(async (m, tx) => {
        await tx.query(`INSERT INTO ${name}_effects (key, seq, payload) VALUES ($1, $2, $3)`, [
          m.key,
          m.seq,
          String(m.payload),
        ]);
      }),
      backoff: { baseDelayMs: 1, maxDelayMs: 20 },
    });
    const stop = await broker.consume(consumer);
    return async () => {
      await stop();
      await consumer.close().catch(() => undefined);
    };
  };
  let stopConsumer = await startConsumer();

  let op = 0;
  const producer = async (id: number): Promise<void> => {
    const r = createRandom(seed * 977 + id);
    while (performance.now() < end) {
      const client = await pool.connect();
      const added: { key: string; seq: number; payload: string }[] = [];
      try {
        await client.query('BEGIN');
        if (r.next() < 0.4) await client.query('SELECT pg_current_xact_id()');
        if (r.next() < 0.3) await sleep(r.int(40)); // commits late
        const keys = [
          ...new Set(Array.from({ length: 1 + r.int(3) }, () => `k${r.int(keyCount)}`)),
        ];
        for (const key of keys) {
          const payload = `p${id}.${op++}`;
          const m = await outbox.add(client, { key, type: 't', payload });
          added.push({ key, seq: m.seq, payload });
          if (r.next() < 0.2) await sleep(r.int(10));
        }
        if (r.next() < 0.1) {
          await client.query('ROLLBACK');
          rolledBack += added.length;
        } else {
          await client.query('COMMIT');
          for (const a of added) committed.set(`${a.key}#${a.seq}`, a.payload);
        }
      } catch {
        // A deadlock victim (keys taken in different orders): rolled back.
        await client.query('ROLLBACK').catch(() => undefined);
        rolledBack += added.length;
      } finally {
        client.release();
      }
    }
  };

  const nemesis = async (): Promise<void> => {
    while (performance.now() < end) {
      await sleep(150 + random.int(600));
      if (random.next() < 0.5) {
        await relay.stop();
        relay = startRelay();
        relayKills++;
      } else {
        await stopConsumer();
        stopConsumer = await startConsumer();
        consumerKills++;
      }
    }
  };

  try {
    await Promise.all([nemesis(), ...Array.from({ length: 6 }, (_, i) => producer(i))]);
    // Drain: until every committed message is applied (or 60 s).
    const deadline = performance.now() + 60_000;
    for (;;) {
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${name}_effects`);
      if (rows[0].n >= committed.size || performance.now() > deadline) break;
      await sleep(50);
    }
    await sleep(200); // anything applied twice would show now
  } finally {
    await relay.stop();
    await stopConsumer();
    await broker.cleanup();
  }

  const { rows } = await pool.query<{ key: string; seq: number; payload: string }>(
    `SELECT key, seq, payload FROM ${name}_effects ORDER BY id`,
  );
  await pool.query(
    `DROP TABLE ${name}_effects, ${name}_outbox, ${name}_outbox_keys, ${name}_outbox_cursors`,
  );
  const violations: string[] = [];
  const last = new Map<string, number>();
  for (const { key, seq, payload } of rows) {
    const id = `${key}#${seq}`;
    const want = committed.get(id);
    if (want === undefined) violations.push(`${id} applied but never committed`);
    else if (want !== payload)
      violations.push(`${id} applied with ${payload}, committed with ${want}`);
    const previous = last.get(key) ?? 0;
    if (seq !== previous + 1) violations.push(`${id} applied after ${key}#${previous}`);
    last.set(key, Math.max(previous, seq));
  }
  for (const id of committed.keys()) {
    const key = id.slice(0, id.lastIndexOf('#'));
    const seq = Number(id.slice(id.lastIndexOf('#') + 1));
    if ((last.get(key) ?? 0) < seq) violations.push(`${id} never applied`);
  }
  return { seed, committed: committed.size, rolledBack, relayKills, consumerKills, violations };
}
