/**
 * Feeding an ordered consumer from partition queues: manual acks, a
 * prefetch window, and a dead-letter path that keeps the reason.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { assertPlainObject, assertPositiveInteger } from '../core/validate.js';
import { checkPartitions, deliverToConsumer } from '../messaging/broker-delivery.js';
import { decodeMessage, type WireMessage } from '../messaging/message.js';
import type { HybridLogicalClock } from '../clock/hlc.js';
import { checkClock, received } from '../messaging/clock-headers.js';
import { OrderedConsumer } from '../messaging/ordered-consumer.js';
import { resolveTopology, type RabbitTopology } from './topology.js';
import type { AmqpChannelLike, AmqpMessageLike } from './types.js';

/** Options of {@link consumeOrdered}. */
export interface ConsumeOrderedOptions {
  readonly topology: RabbitTopology;
  /** What applies the messages, in per-key order. */
  readonly consumer: OrderedConsumer;
  /**
   * Unacknowledged messages per partition queue. Keep partitions × prefetch
   * at or below the consumer's `maxBuffered`.
   * @default 100
   */
  readonly prefetch?: number;
  /** Partitions this process consumes. @default all */
  readonly partitions?: readonly number[];
  /**
   * A hybrid logical clock that takes in each message's `x-hlc` stamp
   * before the handler runs (later stamps of this process are after it). A
   * malformed stamp, or one beyond the clock's `maxOffsetMs`, dead-letters
   * the message with the reason; the clock is unchanged.
   */
  readonly clock?: HybridLogicalClock;
}

/** A running subscription; `close()` cancels it and gives back what was not applied. */
export interface RabbitSubscription extends AsyncDisposable {
  close(): Promise<void>;
}

/** The header a dead-lettered copy carries its reason in. */
export const DEAD_REASON_HEADER = 'raceguard-dead-reason';

function wireOf(message: AmqpMessageLike): WireMessage {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) {
    if (typeof value === 'string') headers[name] = value;
    else if (Buffer.isBuffer(value)) headers[name] = value.toString('utf8');
    else if (typeof value === 'number' || typeof value === 'bigint') headers[name] = String(value);
  }
  return { body: message.content, headers };
}

/**
 * Consume the partition queues of `topology` (single active consumer each:
 * other processes take over a queue when this one goes away) into an
 * {@link OrderedConsumer}.
 *
 * @example
 * ```ts
 * const channel = await connection.createChannel();
 * const consumer = new OrderedConsumer({ progress: inbox, handler: inbox.handler(apply) });
 * const subscription = await consumeOrdered(channel, { topology, consumer });
 * ```
 */
export async function consumeOrdered(
  channel: AmqpChannelLike,
  options: ConsumeOrderedOptions,
): Promise<RabbitSubscription> {
  assertPlainObject('channel', channel);
  assertPlainObject('options', options);
  const topology = resolveTopology(options.topology);
  const consumer = options.consumer;
  if (!(consumer instanceof OrderedConsumer)) {
    throw new InvalidArgumentError('options.consumer', 'an OrderedConsumer', consumer);
  }
  const clock = checkClock('options.clock', options.clock);
  const prefetch = options.prefetch ?? 100;
  assertPositiveInteger('options.prefetch', prefetch);
  const partitions = checkPartitions(options.partitions, topology.partitions);

  const deadLetter = (message: AmqpMessageLike, reason: string): void => {
    // A copy with the reason goes to the dead-letter exchange; the original is acknowledged.
    channel.publish(topology.deadExchange, '', message.content, {
      headers: { ...wireOf(message).headers, [DEAD_REASON_HEADER]: reason },
      messageId:
        typeof message.properties.messageId === 'string' ? message.properties.messageId : '',
      type: 'dead-letter',
      persistent: true,
      contentType: 'application/json',
    });
    channel.ack(message);
  };

  const onMessage = (raw: AmqpMessageLike | null): void => {
    if (raw === null) return; // the broker cancelled the consumer (queue deleted)
    void deliverToConsumer(consumer, {
      decode: () => received(decodeMessage(wireOf(raw)), clock),
      ack: () => channel.ack(raw),
      requeue: () => channel.nack(raw, false, true),
      deadLetter: (reason) => deadLetter(raw, reason),
    });
  };

  await channel.prefetch(prefetch, false);
  const tags: string[] = [];
  for (const partition of partitions) {
    const { consumerTag } = await channel.consume(topology.queueOf(partition), onMessage, {
      noAck: false,
    });
    tags.push(consumerTag);
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const tag of tags) await channel.cancel(tag).catch(() => undefined);
      await consumer.close();
    })());
  return { close, [Symbol.asyncDispose]: close };
}
