/**
 * The slice of amqplib's promise API that raceguard calls. amqplib's
 * `Channel` and `ConfirmChannel` satisfy these structurally, so raceguard
 * never imports the driver.
 */

/** Properties of a delivered message that raceguard reads. */
export interface AmqpMessageLike {
  readonly content: Buffer;
  readonly fields: { readonly deliveryTag: number; readonly redelivered: boolean };
  readonly properties: {
    readonly headers?: Record<string, unknown> | undefined;
    readonly messageId?: unknown;
  };
}

/** Publish options raceguard sets. */
export interface AmqpPublishOptions {
  readonly headers: Record<string, string>;
  readonly messageId: string;
  readonly type: string;
  readonly persistent: boolean;
  readonly contentType: string;
}

/** An amqplib channel (promise API). */
export interface AmqpChannelLike {
  assertExchange(
    exchange: string,
    type: string,
    options?: Record<string, unknown>,
  ): Promise<unknown>;
  assertQueue(queue: string, options?: Record<string, unknown>): Promise<unknown>;
  bindQueue(queue: string, source: string, pattern: string): Promise<unknown>;
  prefetch(count: number, global?: boolean): Promise<unknown>;
  consume(
    queue: string,
    onMessage: (message: AmqpMessageLike | null) => void,
    options?: Record<string, unknown>,
  ): Promise<{ consumerTag: string }>;
  cancel(consumerTag: string): Promise<unknown>;
  ack(message: AmqpMessageLike): void;
  nack(message: AmqpMessageLike, allUpTo?: boolean, requeue?: boolean): void;
  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options?: AmqpPublishOptions,
  ): boolean;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  removeListener(event: 'drain' | 'close', listener: () => void): unknown;
}

/** An amqplib confirm channel (`connection.createConfirmChannel()`). */
export interface AmqpConfirmChannelLike extends AmqpChannelLike {
  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: AmqpPublishOptions,
    callback?: (error: unknown) => void,
  ): boolean;
}
