/**
 * Per-key ordered messaging over NATS JetStream: a stream whose subjects
 * are `<prefix>.<partition>`, a publisher that deduplicates by message id
 * (`Nats-Msg-Id`, within the stream's duplicate window) and waits for each
 * publish acknowledgement, and durable pull consumers, one per partition,
 * feeding an `OrderedConsumer` (which absorbs JetStream's out-of-order
 * redeliveries).
 */
import { within } from '../core/deadline.js';
import { InvalidArgumentError, RaceguardError, messageOf } from '../core/errors.js';
import {
  assertAbortSignal,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import type { LockHandle, Locker } from '../core/lock.js';
import { checkPartitions, deliverToConsumer } from '../messaging/broker-delivery.js';
import { decodeMessage, encodeMessage, partitionOf, type Message } from '../messaging/message.js';
import { OrderedConsumer } from '../messaging/ordered-consumer.js';
import type { OutboxPublisher } from '../messaging/publisher.js';
import type { HybridLogicalClock } from '../clock/hlc.js';
import { checkClock, received, stamped } from '../messaging/clock-headers.js';
import type {
  ConsumerMessagesLike,
  JetStreamClientLike,
  JetStreamManagerLike,
  JsMsgLike,
  NatsHeadersLike,
} from './types.js';

/** A stream of partitioned subjects. */
export interface JetStreamTopology {
  /** The stream's name. */
  readonly stream: string;
  /** Subjects are `<subjectPrefix>.<partition>`; dead letters go to `<subjectPrefix>.dead`. */
  readonly subjectPrefix: string;
  /** Partitions. Fixed for the life of the stream. */
  readonly partitions: number;
}

/** A JetStream publish or set-up call failed or timed out. */
export class JetStreamError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_JETSTREAM_FAILED', message, cause === undefined ? {} : { cause });
  }
}

const NANOS_PER_MS = 1_000_000;

function checkTopology(topology: JetStreamTopology, at = 'options.topology'): JetStreamTopology {
  assertPlainObject(at, topology);
  assertNonEmptyString(`${at}.stream`, topology.stream);
  assertNonEmptyString(`${at}.subjectPrefix`, topology.subjectPrefix);
  if (/[\s*>]/.test(topology.subjectPrefix)) {
    throw new InvalidArgumentError(
      `${at}.subjectPrefix`,
      'a subject without spaces or wildcards',
      topology.subjectPrefix,
    );
  }
  assertPositiveInteger(`${at}.partitions`, topology.partitions);
  return topology;
}

/**
 * Create the stream (or update its subjects), with a duplicate window for
 * `Nats-Msg-Id` deduplication.
 *
 * @example
 * ```ts
 * await ensureStream(await nc.jetstreamManager(), { stream: 'ORDERS', subjectPrefix: 'orders', partitions: 8 });
 * ```
 */
export async function ensureStream(
  manager: JetStreamManagerLike,
  topology: JetStreamTopology,
  options: { readonly duplicateWindowMs?: number } = {},
): Promise<void> {
  const t = checkTopology(topology, 'topology');
  const duplicateWindowMs = options.duplicateWindowMs ?? 120_000;
  assertPositiveInteger('options.duplicateWindowMs', duplicateWindowMs);
  const config = {
    name: t.stream,
    subjects: [`${t.subjectPrefix}.*`],
    duplicate_window: duplicateWindowMs * NANOS_PER_MS,
  };
  try {
    await manager.streams.add(config);
  } catch (error) {
    // Already there with another configuration: bring its subjects and window up to date.
    try {
      await manager.streams.update(t.stream, config);
    } catch {
      throw new JetStreamError(`creating stream ${t.stream} failed: ${messageOf(error)}`, error);
    }
  }
}

/** Options of {@link JetStreamPublisher}. */
export interface JetStreamPublisherOptions {
  /** `nc.jetstream()`. */
  readonly jetstream: JetStreamClientLike;
  readonly topology: JetStreamTopology;
  /**
   * The `headers()` factory of the `nats` package (`import { headers } from 'nats'`).
   */
  readonly headers: () => NatsHeadersLike;
  /**
   * Longest wait for the acknowledgements of one `publish()` call.
   * @default 30000
   */
  readonly ackTimeoutMs?: number;
  /**
   * A hybrid logical clock: every message is stamped with `clock.now()` in
   * its `x-hlc` header (unless it carries one), so consumers can order
   * effects by causality rather than by skewed wall clocks.
   */
  readonly clock?: HybridLogicalClock;
}

/**
 * Publishes messages to their key's partition subject with `Nats-Msg-Id`
 * set to the message id (a republished message within the duplicate window
 * is stored once), and waits for every acknowledgement. An
 * `OutboxPublisher`.
 *
 * @example
 * ```ts
 * import { headers } from 'nats';
 * const publisher = new JetStreamPublisher({ jetstream: nc.jetstream(), topology, headers });
 * ```
 */
export class JetStreamPublisher implements OutboxPublisher {
  readonly #js: JetStreamClientLike;
  readonly #topology: JetStreamTopology;
  readonly #headers: () => NatsHeadersLike;
  readonly #ackTimeoutMs: number;
  readonly #clock: HybridLogicalClock | undefined;

  constructor(options: JetStreamPublisherOptions) {
    assertPlainObject('options', options);
    if (typeof options.jetstream?.publish !== 'function') {
      throw new InvalidArgumentError(
        'options.jetstream',
        'a JetStream client (nc.jetstream())',
        options.jetstream,
      );
    }
    if (typeof options.headers !== 'function') {
      throw new InvalidArgumentError(
        'options.headers',
        "the headers() function of 'nats'",
        options.headers,
      );
    }
    this.#js = options.jetstream;
    this.#topology = checkTopology(options.topology);
    this.#headers = options.headers;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
    assertPositiveInteger('options.ackTimeoutMs', this.#ackTimeoutMs);
    this.#clock = checkClock('options.clock', options.clock);
  }

  async publish(messages: readonly Message[], signal?: AbortSignal): Promise<void> {
    assertAbortSignal('signal', signal);
    const acks = messages.map((message) => {
      const wire = encodeMessage(stamped(message, this.#clock));
      const headers = this.#headers();
      for (const [name, value] of Object.entries(wire.headers)) headers.set(name, value);
      const subject = `${this.#topology.subjectPrefix}.${partitionOf(message.key, this.#topology.partitions)}`;
      // Sent in this order on one connection: a partition's subject keeps it.
      return this.#js
        .publish(subject, wire.body, { msgID: message.id, headers, timeout: this.#ackTimeoutMs })
        .catch((error: unknown) => {
          throw new JetStreamError(`publishing ${message.id} failed: ${messageOf(error)}`, error);
        });
    });
    await within(Promise.all(acks), {
      deadline: performance.now() + this.#ackTimeoutMs,
      signal,
      timeout: () =>
        new JetStreamError(
          `JetStream did not acknowledge ${messages.length} message(s) within ${this.#ackTimeoutMs} ms`,
        ),
    });
  }
}

/** Options of {@link consumeJetStream}. */
export interface ConsumeJetStreamOptions {
  readonly topology: JetStreamTopology;
  /** Durable consumer names are `<durable>-<partition>`. */
  readonly durable: string;
  readonly consumer: OrderedConsumer;
  /** The stream's manager, to create the durable consumers if missing. */
  readonly manager: JetStreamManagerLike;
  /** The `headers()` factory of `nats`, for dead-letter copies. */
  readonly headers: () => NatsHeadersLike;
  /**
   * Partition ownership across processes (JetStream has no single active
   * consumer): a partition is pulled only while this process holds its lock
   * (`<stream>/<durable>-<partition>`), so each key is handled by one process
   * at a time, as RabbitMQ's single-active-consumer queues do. Any raceguard
   * `Locker`: `PostgresLeaseLock`, `RedisLock`, … Without it, this process
   * pulls every partition (one consumer process, or several sharing the
   * durables: correct with a `PostgresInbox`, but each key's messages are
   * then spread over the processes).
   */
  readonly locker?: Locker;
  /**
   * A hybrid logical clock that takes in each message's `x-hlc` stamp
   * before the handler runs (later stamps of this process are after it). A
   * malformed stamp, or one beyond the clock's `maxOffsetMs`, dead-letters
   * the message with the reason; the clock is unchanged.
   */
  readonly clock?: HybridLogicalClock;

  /**
   * Lease of a partition lock (auto-extended while held): how soon another
   * process takes over a partition whose owner died.
   * @default 10000
   */
  readonly lockTtlMs?: number;
  /**
   * How often to try to take partitions nobody holds.
   * @default 1000
   */
  readonly claimEveryMs?: number;
  /**
   * Unacknowledged messages per partition (`max_ack_pending`); JetStream
   * redelivers out of order above 1, which the ordered consumer absorbs.
   * @default 100
   */
  readonly maxAckPending?: number;
  /**
   * How long JetStream waits for an acknowledgement before redelivering.
   * @default 30000
   */
  readonly ackWaitMs?: number;
  /** Partitions this process may pull. @default all */
  readonly partitions?: readonly number[];
}

/** A running JetStream subscription. */
export interface JetStreamSubscription extends AsyncDisposable {
  /** Partitions pulled now. */
  readonly partitions: readonly number[];
  close(): Promise<void>;
}

/** The header a dead-lettered copy carries its reason in. */
export const JETSTREAM_DEAD_REASON_HEADER = 'raceguard-dead-reason';

/**
 * Pull the partitions' durable consumers into an {@link OrderedConsumer};
 * with a `locker`, only the partitions this process owns.
 *
 * @example
 * ```ts
 * const subscription = await consumeJetStream(nc.jetstream(), {
 *   topology, durable: 'billing', consumer, manager: await nc.jetstreamManager(), headers,
 *   locker: new PostgresLeaseLock({ client: pool }),
 * });
 * ```
 */
export async function consumeJetStream(
  jetstream: JetStreamClientLike,
  options: ConsumeJetStreamOptions,
): Promise<JetStreamSubscription> {
  const settings = checkConsumeOptions(options);
  const { topology } = settings;
  for (const partition of settings.partitions) {
    try {
      await options.manager.consumers.add(topology.stream, {
        durable_name: settings.nameOf(partition),
        ack_policy: 'explicit',
        deliver_policy: 'all',
        filter_subject: `${topology.subjectPrefix}.${partition}`,
        max_ack_pending: settings.maxAckPending,
        ack_wait: settings.ackWaitMs * NANOS_PER_MS,
      });
    } catch (error) {
      throw new JetStreamError(
        `creating consumer ${topology.stream}/${settings.nameOf(partition)} failed: ${messageOf(error)}`,
        error,
      );
    }
  }
  const pullers = new PartitionPullers(jetstream, settings);
  try {
    await pullers.claim();
  } catch (error) {
    await pullers.stopAll();
    throw new JetStreamError(`consuming ${topology.stream} failed: ${messageOf(error)}`, error);
  }
  if (settings.locker !== undefined) pullers.claimEvery(settings.claimEveryMs);
  const close = (): Promise<void> => pullers.close();
  return {
    get partitions() {
      return pullers.partitions();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The options of {@link consumeJetStream}, checked, with defaults. */
interface ConsumeSettings {
  readonly topology: ReturnType<typeof checkTopology>;
  readonly consumer: OrderedConsumer;
  readonly headers: () => NatsHeadersLike;
  readonly locker: Locker | undefined;
  readonly lockTtlMs: number;
  readonly claimEveryMs: number;
  readonly maxAckPending: number;
  readonly ackWaitMs: number;
  readonly partitions: readonly number[];
  readonly clock: HybridLogicalClock | undefined;
  /** The durable consumer of a partition. */
  readonly nameOf: (partition: number) => string;
}

function checkConsumeOptions(options: ConsumeJetStreamOptions): ConsumeSettings {
  assertPlainObject('options', options);
  const topology = checkTopology(options.topology);
  assertNonEmptyString('options.durable', options.durable);
  if (!(options.consumer instanceof OrderedConsumer)) {
    throw new InvalidArgumentError('options.consumer', 'an OrderedConsumer', options.consumer);
  }
  if (typeof options.headers !== 'function') {
    throw new InvalidArgumentError(
      'options.headers',
      "the headers() function of 'nats'",
      options.headers,
    );
  }
  const locker = options.locker;
  if (locker !== undefined && typeof (locker as Partial<Locker>).tryAcquire !== 'function') {
    throw new InvalidArgumentError('options.locker', 'a raceguard Locker', locker);
  }
  const lockTtlMs = options.lockTtlMs ?? 10_000;
  assertPositiveInteger('options.lockTtlMs', lockTtlMs);
  const claimEveryMs = options.claimEveryMs ?? 1000;
  assertPositiveInteger('options.claimEveryMs', claimEveryMs);
  const maxAckPending = options.maxAckPending ?? 100;
  assertPositiveInteger('options.maxAckPending', maxAckPending);
  const ackWaitMs = options.ackWaitMs ?? 30_000;
  assertPositiveInteger('options.ackWaitMs', ackWaitMs);
  const { durable } = options;
  return {
    topology,
    consumer: options.consumer,
    headers: options.headers,
    locker,
    lockTtlMs,
    claimEveryMs,
    maxAckPending,
    ackWaitMs,
    partitions: checkPartitions(options.partitions, topology.partitions),
    clock: checkClock('options.clock', options.clock),
    nameOf: (partition) => `${durable}-${partition}`,
  };
}

/** A partition being pulled: its message stream, the loop feeding the consumer, its lock. */
interface Pulling {
  readonly messages: ConsumerMessagesLike;
  readonly loop: Promise<void>;
  readonly lock: LockHandle | undefined;
}

/**
 * The partitions this process pulls: each taken (with a locker: only once
 * its lock is held), pumped into the consumer, and stopped when its lock is
 * lost or the subscription closes.
 */
class PartitionPullers {
  readonly #jetstream: JetStreamClientLike;
  readonly #settings: ConsumeSettings;
  readonly #pulling = new Map<number, Pulling>();
  #closed = false;
  #claiming = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  constructor(jetstream: JetStreamClientLike, settings: ConsumeSettings) {
    this.#jetstream = jetstream;
    this.#settings = settings;
  }

  partitions(): number[] {
    return [...this.#pulling.keys()].sort((a, b) => a - b);
  }

  /** Take every partition not pulled yet (that this process can lock). */
  async claim(): Promise<void> {
    for (const partition of this.#settings.partitions) {
      if (this.#closed) return;
      if (!this.#pulling.has(partition)) await this.#start(partition);
    }
  }

  /** Try to take the partitions nobody holds every `ms`, until closed. */
  claimEvery(ms: number): void {
    this.#timer = setInterval(() => {
      this.#claiming = this.#claiming.then(() => this.claim()).catch(() => undefined);
    }, ms);
    this.#timer.unref();
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#pulling.keys()].map((partition) => this.#stop(partition)));
  }

  /** Stop pulling, give back what was not applied, then free the partitions. Idempotent. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      this.#closed = true;
      clearInterval(this.#timer);
      await this.#claiming;
      const stopping = [...this.#pulling.values()];
      this.#pulling.clear();
      await Promise.all(stopping.map((p) => p.messages.close().catch(() => undefined)));
      await this.#settings.consumer.close();
      await Promise.all(stopping.map((p) => p.loop));
      await Promise.all(
        stopping.flatMap((p) => (p.lock ? [p.lock.release().catch(() => undefined)] : [])),
      );
    })());
  }

  async #stop(partition: number): Promise<void> {
    const current = this.#pulling.get(partition);
    if (current === undefined) return;
    this.#pulling.delete(partition);
    await current.messages.close().catch(() => undefined);
    await current.loop;
    await current.lock?.release().catch(() => undefined);
  }

  async #start(partition: number): Promise<void> {
    const { locker, topology, nameOf } = this.#settings;
    let lock: LockHandle | undefined;
    if (locker !== undefined) {
      lock = await locker
        .tryAcquire(`${topology.stream}/${nameOf(partition)}`, {
          ttlMs: this.#settings.lockTtlMs,
          autoExtend: true,
          onLost: () => void this.#stop(partition),
        })
        .catch(() => undefined);
      if (lock === undefined) return;
    }
    if (this.#closed) {
      await lock?.release().catch(() => undefined);
      return;
    }
    let messages: ConsumerMessagesLike;
    try {
      const durable = await this.#jetstream.consumers.get(topology.stream, nameOf(partition));
      messages = await durable.consume({ max_messages: this.#settings.maxAckPending });
    } catch (error) {
      await lock?.release().catch(() => undefined);
      if (this.#pulling.size === 0 && locker === undefined) throw error;
      return;
    }
    this.#pulling.set(partition, {
      messages,
      lock,
      loop: this.#pump(messages).catch(() => undefined),
    });
  }

  /** Feed a partition's messages to the consumer, one at a time (it waits while the consumer is full). */
  async #pump(messages: ConsumerMessagesLike): Promise<void> {
    const { consumer, clock } = this.#settings;
    for await (const raw of messages) {
      const taken = await deliverToConsumer(consumer, {
        decode: () => {
          const headers: Record<string, string> = {};
          for (const key of raw.headers?.keys() ?? []) headers[key] = raw.headers?.get(key) ?? '';
          return received(decodeMessage({ body: raw.data, headers }), clock);
        },
        ack: () => raw.ack(),
        requeue: () => raw.nak(),
        deadLetter: (reason) => this.#deadLetter(raw, reason),
      });
      if (!taken) break;
    }
  }

  /** A copy with the reason goes to `<prefix>.dead`; the original is terminated (or, failing that, redelivered). */
  #deadLetter(raw: JsMsgLike, reason: string): void {
    const headers = this.#settings.headers();
    for (const name of raw.headers?.keys() ?? []) headers.set(name, raw.headers?.get(name) ?? '');
    headers.set(JETSTREAM_DEAD_REASON_HEADER, reason);
    void this.#jetstream
      .publish(`${this.#settings.topology.subjectPrefix}.dead`, raw.data, { headers })
      .then(
        () => raw.term(reason),
        () => raw.nak(),
      );
  }
}
