/**
 * The publisher contract between the transactional outbox and the brokers:
 * the outbox relay hands it batches, and each broker adapter
 * (`RabbitPublisher`, `JetStreamPublisher`) implements it.
 */
import type { Message } from './message.js';

/**
 * Publishes a batch to a broker; resolves once the broker confirmed every
 * message (a relay marks them published only then), rejects otherwise.
 *
 * @example
 * ```ts
 * const publisher: OutboxPublisher = {
 *   async publish(messages, signal) { await myBroker.sendAll(messages, { signal }); },
 * };
 * ```
 */
export interface OutboxPublisher {
  publish(messages: readonly Message[], signal: AbortSignal): Promise<void>;
}
