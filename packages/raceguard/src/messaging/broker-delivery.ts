/**
 * What every broker adapter (RabbitMQ, NATS JetStream) does with one raw
 * message on its way into an {@link OrderedConsumer}, written once; and the
 * check of the partitions an adapter is asked to consume.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { ConsumerClosedError } from './errors.js';
import type { Message } from './message.js';
import type { OrderedConsumer } from './ordered-consumer.js';

/** One raw message of a broker, as {@link deliverToConsumer} needs it. */
export interface BrokerMessage {
  /** The envelope (throws `MessageDecodeError` for a malformed one). */
  decode(): Message;
  ack(): void;
  /** Give it back to the broker for redelivery. */
  requeue(): void;
  /** Move it to the dead letters with `reason`. */
  deadLetter(reason: string): void;
}

/**
 * Hand one raw message to the consumer. A message that does not decode, or
 * that the consumer refuses, is dead-lettered with the reason; one that
 * arrives while the consumer closes goes back to the broker. Resolves once
 * the consumer has taken it (it waits while the consumer is full:
 * back-pressure on the broker); `false` when the consumer is closed.
 * Never rejects.
 */
export async function deliverToConsumer(
  consumer: OrderedConsumer,
  raw: BrokerMessage,
): Promise<boolean> {
  const deadLetter = (reason: string): void => raw.deadLetter(reason);
  let message: Message;
  try {
    message = raw.decode();
  } catch (error) {
    await consumer.reject(deadLetter, error);
    return true;
  }
  try {
    await consumer.deliver({
      message,
      ack: () => raw.ack(),
      requeue: () => raw.requeue(),
      deadLetter,
    });
  } catch (error) {
    if (!(error instanceof ConsumerClosedError)) {
      await consumer.reject(deadLetter, error);
      return true;
    }
    try {
      raw.requeue();
    } catch {
      // The channel is gone: the broker redelivers it anyway.
    }
    return false;
  }
  return true;
}

/**
 * The partitions to consume: `partitions`, or all of a topology's
 * `count`; each an integer in `0..count-1`.
 */
export function checkPartitions(
  partitions: readonly number[] | undefined,
  count: number,
): readonly number[] {
  const chosen = partitions ?? [...Array(count).keys()];
  for (const p of chosen) {
    if (!Number.isSafeInteger(p) || p < 0 || p >= count)
      throw new InvalidArgumentError('options.partitions', `partitions of 0..${count - 1}`, p);
  }
  return chosen;
}
