/**
 * A throwaway standalone ZooKeeper (Debian package `zookeeper`) on a free
 * loopback port, with its data in a temporary directory removed on stop.
 */
import { stopper, untilReady } from './child-server.js';
import { freePort } from './free-port.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaceguardError } from '../core/errors.js';

/** The launcher the Debian package installs. */
const ZK_SERVER = '/usr/share/zookeeper/bin/zkServer.sh';

/** A running ZooKeeper started by raceguard. */
export interface ZooKeeperServer extends AsyncDisposable {
  /** Connection string, e.g. `127.0.0.1:21811`. */
  readonly connectionString: string;
  readonly process: ChildProcess;
  /** Stop it and delete its data. Idempotent. */
  stop(): Promise<void>;
}

/** ZooKeeper could not be started. */
export class ZooKeeperStartError extends RaceguardError {
  constructor(message: string) {
    super('RACEGUARD_ZOOKEEPER_START_FAILED', message);
  }
}

/** ZooKeeper's `ruok` four-letter command: `imok` when it serves requests. */
function ruok(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('ruok'));
    socket.on('data', (data) => (answer += data.toString()));
    socket.once('close', () => resolve(answer === 'imok'));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => socket.destroy());
  });
}

/**
 * Start a standalone ZooKeeper on a free 127.0.0.1 port. `tickTimeMs`
 * bounds session timeouts (from 2 to 20 ticks).
 *
 * @example
 * ```ts
 * await using zk = await startZooKeeperServer();
 * const client = zookeeper.createClient(zk.connectionString);
 * ```
 */
export async function startZooKeeperServer(
  options: { readonly tickTimeMs?: number } = {},
): Promise<ZooKeeperServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'raceguard-zk-'));
  mkdirSync(join(dir, 'data'));
  const tickTime = options.tickTimeMs ?? 200;
  writeFileSync(
    join(dir, 'zoo.cfg'),
    [
      `tickTime=${tickTime}`,
      `dataDir=${join(dir, 'data')}`,
      `clientPort=${port}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      '4lw.commands.whitelist=ruok',
      `minSessionTimeout=${tickTime * 2}`,
    ].join('\n'),
  );
  const child = spawn(ZK_SERVER, ['start-foreground', join(dir, 'zoo.cfg')], {
    stdio: 'ignore',
    env: { ...process.env, ZOO_LOG_DIR: dir, ZOOCFGDIR: dir },
    detached: false,
  });
  await untilReady(child, {
    ready: () => ruok(port),
    timeoutMs: 30_000,
    pollMs: 100,
    dir,
    exited: () =>
      new ZooKeeperStartError(
        'could not start ZooKeeper (install it with `apt-get install -y zookeeper`)',
      ),
    silent: () => new ZooKeeperStartError('ZooKeeper did not answer ruok within 30 s'),
  });
  const stop = stopper(child, dir);
  return {
    connectionString: `127.0.0.1:${port}`,
    process: child,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
