/**
 * `raceguard/nats`: per-key ordered, exactly-once messaging over NATS
 * JetStream (the `nats` package as an optional peer dependency):
 * partitioned subjects, a deduplicating publisher (usable by the outbox
 * relay), and durable pull consumers feeding an `OrderedConsumer`.
 *
 * @packageDocumentation
 */
export {
  ensureStream,
  JetStreamPublisher,
  consumeJetStream,
  JetStreamError,
  JETSTREAM_DEAD_REASON_HEADER,
  type JetStreamTopology,
  type JetStreamPublisherOptions,
  type ConsumeJetStreamOptions,
  type JetStreamSubscription,
} from './jetstream.js';
export type {
  JetStreamClientLike,
  JetStreamManagerLike,
  JsMsgLike,
  NatsHeadersLike,
  ConsumerMessagesLike,
} from './types.js';
