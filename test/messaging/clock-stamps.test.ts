/**
 * Hybrid logical clock stamps through real brokers: the producer's clock
 * runs 300 ms ahead of the consumer's; publishers stamp each message, the
 * consumers take the stamp in before the handler, so every timestamp the
 * handler takes is after the message's. A stamp beyond the consumer's
 * maximum offset dead-letters the message with the reason and leaves the
 * clock unchanged.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type amqp from 'amqplib';
import { headers, type NatsConnection } from 'nats';
import {
  HybridLogicalClock,
  compareHlc,
  parseHlc,
  type HlcTimestamp,
} from '../../packages/raceguard/src/clock/index.js';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import { OrderedConsumer } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import {
  JetStreamPublisher,
  consumeJetStream,
  ensureStream,
} from '../../packages/raceguard/src/nats/jetstream.js';
import { consumeOrdered } from '../../packages/raceguard/src/rabbitmq/consumer.js';
import { RabbitPublisher } from '../../packages/raceguard/src/rabbitmq/publisher.js';
import { declareTopology } from '../../packages/raceguard/src/rabbitmq/topology.js';
import { connectNats } from '../helpers/nats.js';
import { connectRabbit } from '../helpers/rabbit.js';

const messagesOf = (n: number): Message[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `m${i}`,
    key: `k${i % 5}`,
    seq: Math.floor(i / 5) + 1,
    type: 'changed',
    payload: { i },
    headers: {},
  }));

/** A consumer that records, per message, its stamp and the handler's own timestamp. */
function recording(clock: HybridLogicalClock, expected: number) {
  const seen: { stamp: HlcTimestamp; handled: HlcTimestamp }[] = [];
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  const consumer = new OrderedConsumer({
    handler: async (m) => {
      seen.push({ stamp: parseHlc(m.headers['x-hlc'] ?? ''), handled: clock.now() });
      if (seen.length === expected) done();
    },
  });
  return { consumer, seen, all };
}

describe('HLC stamps through the brokers', () => {
  let connection: amqp.ChannelModel;
  let nc: NatsConnection;
  const name = `rg_hlc_${randomBytes(3).toString('hex')}`;
  before(async () => {
    connection = await connectRabbit();
    nc = await connectNats();
  });
  after(async () => {
    const channel = await connection.createChannel();
    for (const q of [`${name}.0`, `${name}.1`, `${name}.dead`])
      await channel.deleteQueue(q).catch(() => undefined);
    for (const x of [name, `${name}.dead`]) await channel.deleteExchange(x).catch(() => undefined);
    await connection.close();
    await (await nc.jetstreamManager()).streams.delete(name).catch(() => undefined);
    await nc.close();
  });

  it('RabbitMQ and NATS: every handler timestamp is after its message’s stamp, though the producer runs 300 ms ahead', async () => {
    const producer = new HybridLogicalClock({ now: () => Date.now() + 300 });
    // RabbitMQ
    const rabbitClock = new HybridLogicalClock();
    const topology = { exchange: name, queue: name, partitions: 2 };
    const channel = await connection.createChannel();
    await declareTopology(channel, topology);
    const rabbit = recording(rabbitClock, 50);
    const subscription = await consumeOrdered(channel, {
      topology,
      consumer: rabbit.consumer,
      clock: rabbitClock,
    });
    const publisher = new RabbitPublisher({
      channel: await connection.createConfirmChannel(),
      topology,
      clock: producer,
    });
    await publisher.publish(messagesOf(50));
    await rabbit.all;
    await subscription.close();
    // NATS JetStream
    const natsClock = new HybridLogicalClock();
    const stream = { stream: name, subjectPrefix: name, partitions: 2 };
    const manager = await nc.jetstreamManager();
    await ensureStream(manager, stream);
    const nats = recording(natsClock, 50);
    const pulled = await consumeJetStream(nc.jetstream(), {
      topology: stream,
      durable: 'hlc',
      consumer: nats.consumer,
      manager,
      headers,
      clock: natsClock,
    });
    await new JetStreamPublisher({
      jetstream: nc.jetstream(),
      topology: stream,
      headers,
      clock: producer,
    }).publish(messagesOf(50));
    await nats.all;
    await pulled.close();
    for (const { seen } of [rabbit, nats]) {
      assert.equal(seen.length, 50);
      for (const { stamp, handled } of seen) assert.ok(compareHlc(handled, stamp) > 0);
    }
    // Control: a consumer without the clock takes timestamps before the producer's.
    const unaware = new HybridLogicalClock();
    assert.ok(compareHlc(unaware.now(), producer.now()) < 0);
  });

  it('a stamp beyond the maximum offset dead-letters the message with the reason; the clock is unchanged', async () => {
    const topology = { exchange: `${name}x`, queue: `${name}x`, partitions: 1 };
    const channel = await connection.createChannel();
    await declareTopology(channel, topology);
    const clock = new HybridLogicalClock({ maxOffsetMs: 500 });
    const before = clock.now();
    const handled: string[] = [];
    const consumer = new OrderedConsumer({
      handler: async (m) => {
        handled.push(m.id);
      },
    });
    const subscription = await consumeOrdered(channel, { topology, consumer, clock });
    const far = new HybridLogicalClock({ now: () => Date.now() + 60_000 });
    await new RabbitPublisher({
      channel: await connection.createConfirmChannel(),
      topology,
      clock: far,
    }).publish(messagesOf(1));
    let dead: amqp.GetMessage | false = false;
    for (let i = 0; i < 500 && dead === false; i++) {
      dead = await channel.get(`${name}x.dead`, { noAck: true });
      if (dead === false) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(dead !== false, 'dead-lettered');
    assert.match(String(dead.properties.headers?.['raceguard-dead-reason']), /ahead of this clock/);
    assert.deepEqual(handled, []);
    assert.ok(clock.last.wall < Date.now() + 1000 && compareHlc(clock.last, before) >= 0);
    await subscription.close();
    for (const q of [`${name}x.0`, `${name}x.dead`])
      await channel.deleteQueue(q).catch(() => undefined);
    for (const x of [`${name}x`, `${name}x.dead`])
      await channel.deleteExchange(x).catch(() => undefined);
  });
});
