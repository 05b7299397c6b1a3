/**
 * Publishing to partition queues with publisher confirms: `publish()`
 * resolves once RabbitMQ has taken responsibility for every message (for
 * durable queues: written to disk, or replicated to a quorum).
 */
import { within } from '../core/deadline.js';
import { RaceguardError, messageOf } from '../core/errors.js';
import { assertAbortSignal, assertPlainObject, assertPositiveInteger } from '../core/validate.js';
import { encodeMessage, partitionOf, type Message } from '../messaging/message.js';
import type { OutboxPublisher } from '../messaging/publisher.js';
import type { HybridLogicalClock } from '../clock/hlc.js';
import { checkClock, stamped } from '../messaging/clock-headers.js';
import { resolveTopology, type RabbitTopology, type ResolvedTopology } from './topology.js';
import type { AmqpConfirmChannelLike } from './types.js';

/** RabbitMQ refused a message, or did not confirm it in time. */
export class PublishError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_PUBLISH_FAILED', message, cause === undefined ? {} : { cause });
  }
}

/** Options of {@link RabbitPublisher}. */
export interface RabbitPublisherOptions {
  /** A confirm channel (`await connection.createConfirmChannel()`). */
  readonly channel: AmqpConfirmChannelLike;
  readonly topology: RabbitTopology;
  /**
   * Longest wait for the broker's confirms of one `publish()` call.
   * @default 30000
   */
  readonly confirmTimeoutMs?: number;
  /**
   * A hybrid logical clock: every message is stamped with `clock.now()` in
   * its `x-hlc` header (unless it carries one), so consumers can order
   * effects by causality rather than by skewed wall clocks.
   */
  readonly clock?: HybridLogicalClock;
}

/**
 * Publishes messages to their key's partition queue, in the order given,
 * and waits for the confirms. An `OutboxPublisher`, so an outbox relay can
 * use it directly.
 *
 * @example
 * ```ts
 * const publisher = new RabbitPublisher({ channel: await connection.createConfirmChannel(), topology });
 * await publisher.publish([message]);
 * ```
 */
export class RabbitPublisher implements OutboxPublisher {
  readonly #channel: AmqpConfirmChannelLike;
  readonly #topology: ResolvedTopology;
  readonly #confirmTimeoutMs: number;
  readonly #clock: HybridLogicalClock | undefined;

  constructor(options: RabbitPublisherOptions) {
    assertPlainObject('options', options);
    assertPlainObject('options.channel', options.channel);
    if (typeof options.channel.publish !== 'function') {
      throw new PublishError('options.channel must be an amqplib confirm channel');
    }
    this.#channel = options.channel;
    this.#topology = resolveTopology(options.topology);
    this.#confirmTimeoutMs = options.confirmTimeoutMs ?? 30_000;
    assertPositiveInteger('options.confirmTimeoutMs', this.#confirmTimeoutMs);
    this.#clock = checkClock('options.clock', options.clock);
  }

  async publish(messages: readonly Message[], signal?: AbortSignal): Promise<void> {
    assertAbortSignal('signal', signal);
    const wires = messages.map((m) => ({
      message: m,
      wire: encodeMessage(stamped(m, this.#clock)),
    }));
    const confirms: Promise<void>[] = [];
    for (const { message, wire } of wires) {
      const partition = partitionOf(message.key, this.#topology.partitions);
      let confirmed: (error: unknown) => void = () => undefined;
      confirms.push(
        new Promise<void>((resolve, reject) => {
          confirmed = (error) =>
            error === null || error === undefined
              ? resolve()
              : reject(
                  new PublishError(`RabbitMQ refused ${message.id}: ${messageOf(error)}`, error),
                );
        }),
      );
      let flowing: boolean;
      try {
        flowing = this.#channel.publish(
          this.#topology.exchange,
          String(partition),
          Buffer.from(wire.body),
          {
            headers: { ...wire.headers },
            messageId: message.id,
            type: message.type,
            persistent: true,
            contentType: 'application/json',
          },
          confirmed,
        );
      } catch (error) {
        throw new PublishError(`publishing ${message.id} failed: ${messageOf(error)}`, error);
      }
      if (!flowing) await this.#drained(signal);
    }
    const all = Promise.all(confirms).then(() => undefined);
    await within(all, {
      deadline: performance.now() + this.#confirmTimeoutMs,
      signal,
      timeout: () =>
        new PublishError(
          `RabbitMQ did not confirm ${messages.length} message(s) within ${this.#confirmTimeoutMs} ms`,
        ),
    });
  }

  /** The channel's write buffer is full: wait for it to drain (or close). */
  #drained(signal: AbortSignal | undefined): Promise<void> {
    let done: () => void = () => undefined;
    const drained = new Promise<void>((resolve) => {
      done = () => {
        this.#channel.removeListener('drain', done);
        this.#channel.removeListener('close', done);
        resolve();
      };
      this.#channel.once('drain', done);
      this.#channel.once('close', done);
    });
    return within(drained, {
      deadline: performance.now() + this.#confirmTimeoutMs,
      signal,
      timeout: () => new PublishError('the channel stayed blocked (RabbitMQ flow control)'),
    }).finally(done);
  }
}
