/**
 * Bad input over a real RabbitMQ: a message without a key, one whose
 * sequence is not a number, one whose body is not JSON, and a handler that
 * keeps failing. Each is dead-lettered with its reason (a copy on the
 * dead-letter queue carries it), nothing is retried forever, and the key of
 * the failing message goes on in order.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type amqp from 'amqplib';
import type { ConsumerEvent } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import { OrderedConsumer } from '../../packages/raceguard/src/messaging/ordered-consumer.js';
import {
  consumeOrdered,
  DEAD_REASON_HEADER,
} from '../../packages/raceguard/src/rabbitmq/consumer.js';
import { RabbitPublisher } from '../../packages/raceguard/src/rabbitmq/publisher.js';
import { declareTopology } from '../../packages/raceguard/src/rabbitmq/topology.js';
import { connectRabbit } from '../helpers/rabbit.js';

describe('RabbitMQ: bad input is dead-lettered with its reason', () => {
  let connection: amqp.ChannelModel;
  let channel: amqp.Channel;
  const name = `rg_bad_${randomBytes(3).toString('hex')}`;
  const topology = { exchange: name, queue: name, partitions: 1 };

  before(async () => {
    connection = await connectRabbit();
    channel = await connection.createChannel();
    await declareTopology(channel, topology);
  });
  after(async () => {
    await channel.deleteQueue(`${name}.0`).catch(() => undefined);
    await channel.deleteQueue(`${name}.dead`).catch(() => undefined);
    await channel.deleteExchange(name).catch(() => undefined);
    await channel.deleteExchange(`${name}.dead`).catch(() => undefined);
    await connection.close();
  });

  it('undecodable messages and a handler that keeps failing end on the dead-letter queue; the key goes on', async () => {
    const applied: number[] = [];
    const events: ConsumerEvent[] = [];
    const consumer = new OrderedConsumer({
      maxAttempts: 3,
      backoff: { baseDelayMs: 1, maxDelayMs: 5 },
      onEvent: (e) => events.push(e),
      handler: async (m) => {
        if (m.seq === 2) throw new Error('the warehouse refused the order');
        applied.push(m.seq);
      },
    });
    const subscription = await consumeOrdered(channel, { topology, consumer });
    const raw = (headers: Record<string, string>, body: string) =>
      channel.publish(name, '0', Buffer.from(body), { headers });
    raw({ 'raceguard-seq': '1' }, '{}'); // no key
    raw({ 'raceguard-key': 'k', 'raceguard-seq': 'two' }, '{}'); // no sequence
    raw({ 'raceguard-key': 'k', 'raceguard-seq': '1' }, '{not json'); // no JSON
    const publisher = new RabbitPublisher({
      channel: await connection.createConfirmChannel(),
      topology,
    });
    await publisher.publish(
      [1, 2, 3].map((seq) => ({
        id: `k:${seq}`,
        key: 'k',
        seq,
        type: 't',
        payload: {},
        headers: {},
      })),
    );
    const reasons = new Map<string, string>();
    const deadline = performance.now() + 20_000;
    while (reasons.size < 4) {
      assert.ok(
        performance.now() < deadline,
        `dead letters so far: ${[...reasons.values()].join(' | ')}`,
      );
      const got = await channel.get(`${name}.dead`, { noAck: true });
      if (got === false) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      const headers = got.properties.headers as Record<string, unknown>;
      reasons.set(String(reasons.size), String(headers[DEAD_REASON_HEADER]));
    }
    await consumer.drained();
    await subscription.close();
    const all = [...reasons.values()].sort();
    assert.ok(
      all.some((r) => /no raceguard-key header/.test(r)),
      all.join(' | '),
    );
    assert.ok(
      all.some((r) => /raceguard-seq must be a positive integer/.test(r)),
      all.join(' | '),
    );
    assert.ok(
      all.some((r) => /the body is not JSON/.test(r)),
      all.join(' | '),
    );
    assert.ok(
      all.some((r) => /the warehouse refused the order \(after 3 attempts\)/.test(r)),
      all.join(' | '),
    );
    assert.deepEqual(applied, [1, 3], 'the key went on, in order, past the dead letter');
    assert.equal(events.filter((e) => e.type === 'retry').length, 2);
  });
});
