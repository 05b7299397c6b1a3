/**
 * The slice of nats.js (the `nats` package, v2) that raceguard calls; its
 * `JetStreamClient`, `JetStreamManager` and `JsMsg` satisfy these
 * structurally.
 */

/** NATS message headers (`MsgHdrs`). */
export interface NatsHeadersLike {
  set(name: string, value: string): void;
  get(name: string): string;
  keys(): string[];
}

/** A JetStream message as a pull consumer yields it (`JsMsg`). */
export interface JsMsgLike {
  readonly data: Uint8Array;
  readonly headers?: NatsHeadersLike | undefined;
  readonly redelivered: boolean;
  ack(): void;
  nak(millis?: number): void;
  term(reason?: string): void;
}

/** The messages of `consumer.consume()`. */
export interface ConsumerMessagesLike extends AsyncIterable<JsMsgLike> {
  close(): Promise<unknown>;
}

/** `nc.jetstream()`. */
export interface JetStreamClientLike {
  publish(
    subject: string,
    payload?: Uint8Array,
    options?: { msgID?: string; timeout?: number; headers?: NatsHeadersLike },
  ): Promise<{ readonly seq: number; readonly duplicate: boolean }>;
  readonly consumers: {
    get(
      stream: string,
      name: string,
    ): Promise<{ consume(options?: { max_messages?: number }): Promise<ConsumerMessagesLike> }>;
  };
}

/** `await nc.jetstreamManager()`. */
export interface JetStreamManagerLike {
  readonly streams: {
    add(config: Record<string, unknown>): Promise<unknown>;
    info(name: string): Promise<unknown>;
    update(name: string, config: Record<string, unknown>): Promise<unknown>;
  };
  readonly consumers: {
    add(stream: string, config: Record<string, unknown>): Promise<unknown>;
  };
}
