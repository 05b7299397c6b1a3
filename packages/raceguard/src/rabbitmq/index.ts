/**
 * `raceguard/rabbitmq`: per-key ordered, exactly-once messaging over
 * RabbitMQ (amqplib as an optional peer dependency): partition queues with
 * single-active-consumer, a publisher with confirms (usable by the outbox
 * relay), and a subscription that feeds an `OrderedConsumer`.
 *
 * @packageDocumentation
 */
export {
  declareTopology,
  resolveTopology,
  type RabbitTopology,
  type ResolvedTopology,
} from './topology.js';
export { RabbitPublisher, PublishError, type RabbitPublisherOptions } from './publisher.js';
export {
  consumeOrdered,
  DEAD_REASON_HEADER,
  type ConsumeOrderedOptions,
  type RabbitSubscription,
} from './consumer.js';
export type {
  AmqpChannelLike,
  AmqpConfirmChannelLike,
  AmqpMessageLike,
  AmqpPublishOptions,
} from './types.js';
