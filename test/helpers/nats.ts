import { connect, type NatsConnection } from 'nats';

/** The NATS server the tests use: NATS_URL, or the machine's on the standard port. */
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

export function connectNats(
  // Read at call time: a script may start a server after importing this.
  servers = process.env.NATS_URL ?? NATS_URL,
): Promise<NatsConnection> {
  return connect({ servers, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
}
