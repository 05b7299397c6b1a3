/**
 * A loopback TCP proxy that can stop forwarding without closing: a
 * connection that goes silent (a stalled peer, a partition) while both ends
 * still believe it open. What arrives while silent is delivered on resume.
 */
import net from 'node:net';

export interface SilenceableProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  silence(): void;
  resume(): void;
  close(): void;
}

/** A loopback TCP proxy to `port` that can stop forwarding without closing (a silent connection). */
export async function silenceableProxy(port: number): Promise<SilenceableProxy> {
  const sockets = new Set<net.Socket>();
  let silent = false;
  const held: (() => void)[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (chunk) => {
        if (silent) held.push(() => to.write(chunk));
        else to.write(chunk);
      });
      from.on('error', () => undefined);
      from.on('close', () => to.destroy());
    }
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    silence: () => void (silent = true),
    resume: () => {
      silent = false;
      for (const send of held.splice(0)) send();
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}
