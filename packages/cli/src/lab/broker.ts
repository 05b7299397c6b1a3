/**
 * The lab's message broker: NATS with JetStream from `NATS_URL`, the
 * machine's server on 127.0.0.1:4222, or a throwaway `nats-server` started
 * for the run. Without any, the message scenarios are skipped, saying why.
 */
import { messageOf } from '../arguments.js';
import { reachable, startNatsServer } from 'raceguard/testing';
import type { LabBroker } from './message-scenario.js';

/** Open the broker, or say why there is none. */
export async function openLabBroker(
  cleanup: (() => Promise<unknown>)[],
): Promise<LabBroker | { readonly unavailable: string }> {
  let url = process.env.NATS_URL;
  let origin = 'NATS_URL';
  if (url === undefined) {
    if (await reachable(4222)) {
      url = 'nats://127.0.0.1:4222';
      origin = 'NATS on 127.0.0.1:4222';
    } else {
      try {
        const server = await startNatsServer();
        cleanup.push(() => server.stop());
        url = server.url;
        origin = 'a nats-server started for the lab';
      } catch (error) {
        return { unavailable: `no NATS server (${messageOf(error)})` };
      }
    }
  }
  try {
    const { connect } = await import('nats');
    const nats = await connect({ servers: url });
    cleanup.push(() => nats.close());
    return { nats, origin };
  } catch (error) {
    return { unavailable: `NATS at ${url} unreachable (${messageOf(error)})` };
  }
}
