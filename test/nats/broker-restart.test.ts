/**
 * Broker faults on servers the test starts itself: a NATS server SIGKILLed
 * mid-stream and restarted on its data (JetStream file storage), with the
 * publisher retrying through the outage (Nats-Msg-Id drops the copies) and
 * the consumer reconnecting; and a RabbitMQ node started from the Debian
 * package, as the test command does on a machine without one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { connect, headers } from 'nats';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import { OrderedConsumer } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import {
  JetStreamPublisher,
  consumeJetStream,
  ensureStream,
} from '../../packages/raceguard/src/nats/jetstream.js';
import { PostgresInbox } from '../../packages/raceguard/src/postgres/messaging/inbox.js';
import { consumeOrdered } from '../../packages/raceguard/src/rabbitmq/consumer.js';
import { RabbitPublisher } from '../../packages/raceguard/src/rabbitmq/publisher.js';
import { declareTopology } from '../../packages/raceguard/src/rabbitmq/topology.js';
import {
  startNatsServer,
  startRabbitMqServer,
} from '../../packages/raceguard/src/testing/brokers.js';
import { gate } from '../helpers/gate.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { streamOf } from '../helpers/ordered-stream.js';
import { checkHistory, clean } from '../helpers/sequence-history.js';

describe('broker faults', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(10);
  });
  after(() => db.close());

  async function effectsTable(name: string) {
    await db.pool.query(`CREATE TABLE ${name} (id bigserial PRIMARY KEY, key text, seq int)`);
    const inbox = new PostgresInbox({ client: db.pool, consumer: name, table: `${name}_inbox` });
    await inbox.createTable();
    const consumer = new OrderedConsumer({
      progress: inbox,
      maxAttempts: 1000,
      backoff: { baseDelayMs: 5, maxDelayMs: 50 },
      handler: inbox.handler(async (m, tx) => {
        await tx.query(`INSERT INTO ${name} (key, seq) VALUES ($1, $2)`, [m.key, m.seq]);
      }),
    });
    const applied = async () =>
      (
        await db.pool.query<{ key: string; seq: number }>(
          `SELECT key, seq FROM ${name} ORDER BY id`,
        )
      ).rows;
    return { consumer, applied };
  }

  async function until(check: () => Promise<boolean>, what: string, ms = 60_000) {
    const deadline = performance.now() + ms;
    while (!(await check())) {
      assert.ok(performance.now() < deadline, what);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('NATS killed mid-stream and restarted on its data: every effect once, in order', async () => {
    let nats = await startNatsServer();
    const { port, dataDir } = nats;
    const nc = await connect({
      servers: nats.url,
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    try {
      const topology = { stream: 'RESTART', subjectPrefix: 'restart', partitions: 2 };
      await ensureStream(await nc.jetstreamManager(), topology);
      const { consumer, applied } = await effectsTable('nats_effects');
      const subscription = await consumeJetStream(nc.jetstream(), {
        topology,
        durable: 'effects',
        consumer,
        manager: await nc.jetstreamManager(),
        headers,
        ackWaitMs: 2000,
      });
      const { messages, expected } = streamOf(40, 50);
      const publisher = new JetStreamPublisher({
        jetstream: nc.jetstream(),
        topology,
        headers,
        ackTimeoutMs: 2000,
      });
      let retries = 0;
      // The publisher stops halfway until the server is down, so the outage hits it.
      const halfway = gate();
      const publishing = (async () => {
        for (let i = 0; i < messages.length; i += 50) {
          if (i === 1000) await halfway.wait();
          const batch: Message[] = messages.slice(i, i + 50);
          // Through the outage: publish the whole batch again until it is acknowledged.
          for (;;) {
            try {
              await publisher.publish(batch);
              break;
            } catch {
              retries++;
              await new Promise((resolve) => setTimeout(resolve, 200));
            }
          }
        }
      })();
      await halfway.arrived;
      await until(async () => (await applied()).length >= 300, 'the stream started');
      await nats.kill(); // consumers and the publisher lose the server mid-stream
      halfway.open();
      await new Promise((resolve) => setTimeout(resolve, 500));
      nats = await startNatsServer({ port, dataDir });
      await publishing;
      await until(
        async () => new Set((await applied()).map((r) => `${r.key}#${r.seq}`)).size >= 2000,
        'every message applied after the restart',
      );
      await subscription.close();
      const verdict = checkHistory(await applied(), expected);
      assert.ok(clean(verdict), JSON.stringify(verdict));
      assert.ok(retries > 0, 'the publisher saw the outage');
    } finally {
      await nc.close().catch(() => undefined);
      await nats.stop();
    }
  });

  it('a RabbitMQ node started from the Debian package carries an ordered stream', async () => {
    const rabbit = await startRabbitMqServer();
    const connection = await amqp.connect(rabbit.url);
    connection.on('error', () => undefined);
    try {
      const channel = await connection.createChannel();
      const topology = { exchange: 'own', queue: 'own', partitions: 2 };
      await declareTopology(channel, topology);
      const { consumer, applied } = await effectsTable('rabbit_effects');
      const subscription = await consumeOrdered(channel, { topology, consumer });
      const { messages, expected } = streamOf(20, 20);
      const publisher = new RabbitPublisher({
        channel: await connection.createConfirmChannel(),
        topology,
      });
      await publisher.publish(messages);
      await until(async () => (await applied()).length >= 400, 'every message applied');
      await subscription.close();
      const verdict = checkHistory(await applied(), expected);
      assert.ok(clean(verdict), JSON.stringify(verdict));
    } finally {
      await connection.close().catch(() => undefined);
      await rabbit.stop();
    }
  });
});
