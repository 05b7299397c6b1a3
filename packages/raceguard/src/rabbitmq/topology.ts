/**
 * Partition queues on RabbitMQ: one direct exchange, N queues with
 * single-active-consumer bound by partition number, and a dead-letter
 * queue. Every message of a key goes to one queue, and one consumer at a
 * time (across all processes) takes from each queue, so N consumers work in
 * parallel without breaking any key's order.
 */
import { InvalidArgumentError } from '../core/errors.js';
import {
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import type { AmqpChannelLike } from './types.js';

/** Names and shape of a partitioned stream. */
export interface RabbitTopology {
  /** The direct exchange messages are published to. */
  readonly exchange: string;
  /** Prefix of the partition queues: `<queue>.0` … `<queue>.<N-1>`, and `<queue>.dead`. */
  readonly queue: string;
  /** Partitions (queues). Fixed for the life of the stream. */
  readonly partitions: number;
  /**
   * The queues' type. Quorum queues are replicated and keep a redelivered
   * message's place less strictly; the ordered consumer absorbs that.
   * @default 'quorum'
   */
  readonly queueType?: 'quorum' | 'classic';
}

/** The checked topology with its derived names. */
export interface ResolvedTopology extends Required<RabbitTopology> {
  readonly deadExchange: string;
  readonly deadQueue: string;
  queueOf(partition: number): string;
}

/** Validate a topology (at construction of whatever uses it). */
export function resolveTopology(
  topology: RabbitTopology,
  at = 'options.topology',
): ResolvedTopology {
  assertPlainObject(at, topology);
  assertNonEmptyString(`${at}.exchange`, topology.exchange);
  assertNonEmptyString(`${at}.queue`, topology.queue);
  assertPositiveInteger(`${at}.partitions`, topology.partitions);
  const queueType = topology.queueType ?? 'quorum';
  if (queueType !== 'quorum' && queueType !== 'classic') {
    throw new InvalidArgumentError(`${at}.queueType`, '"quorum" or "classic"', queueType);
  }
  return {
    exchange: topology.exchange,
    queue: topology.queue,
    partitions: topology.partitions,
    queueType,
    deadExchange: `${topology.exchange}.dead`,
    deadQueue: `${topology.queue}.dead`,
    queueOf: (partition) => `${topology.queue}.${partition}`,
  };
}

/**
 * Declare the exchange, the partition queues (single active consumer each)
 * and the dead-letter queue. Idempotent; run it from every instance.
 *
 * @example
 * ```ts
 * await declareTopology(channel, { exchange: 'orders', queue: 'orders', partitions: 8 });
 * ```
 */
export async function declareTopology(
  channel: AmqpChannelLike,
  topology: RabbitTopology,
): Promise<ResolvedTopology> {
  const t = resolveTopology(topology, 'topology');
  await channel.assertExchange(t.exchange, 'direct', { durable: true });
  await channel.assertExchange(t.deadExchange, 'fanout', { durable: true });
  await channel.assertQueue(t.deadQueue, {
    durable: true,
    arguments: { 'x-queue-type': t.queueType },
  });
  await channel.bindQueue(t.deadQueue, t.deadExchange, '');
  for (let partition = 0; partition < t.partitions; partition++) {
    const queue = t.queueOf(partition);
    await channel.assertQueue(queue, {
      durable: true,
      arguments: {
        'x-queue-type': t.queueType,
        'x-single-active-consumer': true,
        'x-dead-letter-exchange': t.deadExchange,
      },
    });
    await channel.bindQueue(queue, t.exchange, String(partition));
  }
  return t;
}
