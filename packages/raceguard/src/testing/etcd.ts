/**
 * A throwaway single-member etcd (Debian package `etcd-server`) on free
 * loopback ports, with its data in a temporary directory removed on stop.
 */
import { stopper, untilReady } from './child-server.js';
import { freePort } from './free-port.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaceguardError } from '../core/errors.js';

/** A running etcd started by raceguard. */
export interface EtcdServer extends AsyncDisposable {
  /** Client endpoint, e.g. `http://127.0.0.1:23790`. */
  readonly endpoint: string;
  readonly process: ChildProcess;
  /** Stop it and delete its data. Idempotent. */
  stop(): Promise<void>;
}

/** etcd could not be started. */
export class EtcdStartError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_ETCD_START_FAILED', message, { cause });
  }
}

/**
 * Start `etcd` on two free 127.0.0.1 ports.
 *
 * @example
 * ```ts
 * await using etcd = await startEtcdServer();
 * const client = new Etcd3({ hosts: etcd.endpoint });
 * ```
 */
export async function startEtcdServer(): Promise<EtcdServer> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'raceguard-etcd-'));
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    'etcd',
    [
      '--name',
      'raceguard',
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      endpoint,
      '--advertise-client-urls',
      endpoint,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `raceguard=${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  await untilReady(child, {
    ready: () =>
      fetch(`${endpoint}/health`).then(
        async (r) => r.ok && ((await r.json()) as { health?: string }).health === 'true',
        () => false,
      ),
    timeoutMs: 15_000,
    dir: dataDir,
    exited: (why, cause) =>
      new EtcdStartError(
        `could not start etcd: ${why} (install it with \`apt-get install -y etcd-server\`)`,
        cause,
      ),
    silent: () => new EtcdStartError('etcd did not become healthy within 15 s'),
  });
  const stop = stopper(child, dataDir);
  return { endpoint, process: child, stop, [Symbol.asyncDispose]: stop };
}
