/**
 * `raceguard/messaging`: messages in order, exactly once, over any broker.
 * The broker-free core: the message envelope and its wire form, the ordered
 * consumer (per-key sequencing, reorder buffer, gap parking, retries and
 * dead letters), in-memory progress, and the publisher contract the outbox
 * relay hands batches to. The PostgreSQL outbox and inbox are in
 * `raceguard/postgres`; the brokers in `raceguard/rabbitmq` and
 * `raceguard/nats`.
 *
 * @packageDocumentation
 */
export {
  decodeMessage,
  encodeMessage,
  validateMessage,
  partitionOf,
  MessageDecodeError,
  MESSAGE_HEADERS,
  type Message,
  type WireMessage,
} from './message.js';
export {
  OrderedConsumer,
  type Delivery,
  type HandlerContext,
  type ConsumerEvent,
  type OrderedConsumerOptions,
} from './ordered-consumer.js';
export { MemoryProgress, type SequenceProgress } from './progress.js';
export { idempotentHandler, type IdempotentHandlerOptions } from './idempotent-handler.js';
export { ConsumerClosedError, SequenceGapError } from './errors.js';
export type { OutboxPublisher } from './publisher.js';
