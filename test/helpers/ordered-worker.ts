/**
 * A consumer process for the fault tests: consumes a partitioned stream
 * (RabbitMQ or NATS JetStream) into an OrderedConsumer whose handler writes
 * one effect row per message through the PostgreSQL inbox (or, with
 * `plain`, applies on receipt with no ordering and no inbox). The parent
 * SIGKILLs it mid-stream.
 *
 * argv: broker (rabbitmq | nats), mode (ordered | plain), stream name, partitions
 * env: DATABASE_URL (with the test's schema in PGOPTIONS), AMQP_URL / NATS_URL
 */
import pg from 'pg';
import { OrderedConsumer } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import { PostgresInbox } from '../../packages/raceguard/src/postgres/messaging/inbox.js';
import {
  PostgresLeaseLock,
  createLockTables,
} from '../../packages/raceguard/src/postgres/lease-lock.js';
import { consumeOrdered } from '../../packages/raceguard/src/rabbitmq/consumer.js';
import { headers } from 'nats';
import { consumeJetStream } from '../../packages/raceguard/src/nats/jetstream.js';
import { connectNats } from './nats.js';
import { connectRabbit } from './rabbit.js';

const [broker, mode, stream, partitionsArg] = process.argv.slice(2);
const partitions = Number(partitionsArg);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 8 });
pool.on('error', () => undefined);

const effect = (m: Message, db: { query(text: string, values: unknown[]): Promise<unknown> }) =>
  db.query('INSERT INTO effects (key, seq, worker) VALUES ($1, $2, $3)', [
    m.key,
    m.seq,
    process.pid,
  ]);

const inbox = new PostgresInbox({ client: pool, consumer: stream ?? 'x' });
const consumer = new OrderedConsumer({
  progress: inbox,
  concurrency: 16,
  maxBuffered: 2000,
  gapTimeoutMs: 60_000,
  backoff: { baseDelayMs: 5, maxDelayMs: 50 },
  maxAttempts: 1000,
  onEvent: (event) => {
    if (process.env.RACEGUARD_WORKER_LOG === undefined) return;
    if (['gap', 'dead-letter', 'requeued', 'error', 'resumed'].includes(event.type)) {
      const { type, ...rest } = event;
      process.stderr.write(
        `worker ${process.pid} ${type} ${JSON.stringify(rest, (_, v: unknown) => (v instanceof Error ? v.message : v))}\n`,
      );
    }
  },
  handler:
    mode === 'plain'
      ? (m) => effect(m, pool)
      : inbox.handler(async (m, tx) => {
          await effect(m, tx);
        }),
});

if (broker === 'rabbitmq') {
  const connection = await connectRabbit();
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  if (mode === 'plain') {
    // The plain consumer: apply on receipt, ack after, no sequencing, no dedupe.
    await channel.prefetch(100);
    for (let p = 0; p < partitions; p++) {
      await channel.consume(`${stream}.${p}`, (raw) => {
        if (raw === null) return;
        const headers = raw.properties.headers as Record<string, unknown>;
        const m = { key: String(headers['raceguard-key']), seq: Number(headers['raceguard-seq']) };
        pool
          .query('INSERT INTO effects (key, seq, worker) VALUES ($1, $2, $3)', [
            m.key,
            m.seq,
            process.pid,
          ])
          .then(
            () => channel.ack(raw),
            () => channel.nack(raw, false, true),
          );
      });
    }
  } else {
    await consumeOrdered(channel, {
      topology: { exchange: stream ?? '', queue: stream ?? '', partitions },
      consumer,
      prefetch: 100,
    });
  }
}
if (broker === 'nats') {
  await createLockTables(pool);
  const nc = await connectNats();
  await consumeJetStream(nc.jetstream(), {
    topology: { stream: stream ?? '', subjectPrefix: stream ?? '', partitions },
    durable: 'workers',
    consumer,
    manager: await nc.jetstreamManager(),
    headers,
    maxAckPending: 200,
    ackWaitMs: 3000,
    // One owner per partition at a time; a killed owner's lease runs out in 2 s.
    locker: new PostgresLeaseLock({ client: pool }),
    lockTtlMs: 2000,
    claimEveryMs: 200,
  });
}
process.send?.('ready');
