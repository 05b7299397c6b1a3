/**
 * Throwaway message brokers for tests and fault injection: a NATS server
 * with JetStream (Debian package `nats-server`) and a RabbitMQ node (Debian
 * package `rabbitmq-server`), each on free loopback ports with its data in
 * a temporary directory that `stop()` deletes.
 */
import { untilReady } from './child-server.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { RaceguardError } from '../core/errors.js';
import { freePort } from './free-port.js';

/** A broker process started by raceguard. */
export interface BrokerServer extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` or `amqp://guest:guest@127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Where it keeps its data (kept by `kill()`, deleted by `stop()`). */
  readonly dataDir: string;
  /** SIGKILL it, keeping its data (start another on the same `port` and `dataDir`). */
  kill(): Promise<void>;
  /** Stop it and delete its data. Idempotent. */
  stop(): Promise<void>;
}

/** A broker could not be started. */
export class BrokerStartError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_BROKER_START_FAILED', message, cause === undefined ? {} : { cause });
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function reachable(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function waitUntilReachable(
  what: string,
  child: ChildProcess,
  port: number,
  timeoutMs: number,
  hint: string,
): Promise<void> {
  await untilReady(child, {
    ready: () => reachable(port),
    timeoutMs,
    kill: () => killGroup(child, 'SIGKILL'),
    exited: (why, cause) =>
      new BrokerStartError(`could not start ${what}: ${why} (${hint})`, cause),
    silent: () =>
      new BrokerStartError(`${what} on port ${port} did not answer within ${timeoutMs} ms`),
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
}

/** The pid in `file`, if the file holds one. */
function pidIn(file: string | undefined): number | undefined {
  if (file === undefined) return undefined;
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Signal `pid` (ignoring a process already gone); resolves once it has exited, or after `ms`. */
async function stopPid(
  pid: number | undefined,
  signal: NodeJS.Signals,
  ms: number,
): Promise<boolean> {
  if (pid === undefined) return true;
  try {
    process.kill(pid, signal);
  } catch {
    return true;
  }
  const end = performance.now() + ms;
  while (performance.now() < end) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

function serverOf(
  url: string,
  port: number,
  child: ChildProcess,
  dataDir: string,
  removeData: boolean,
  /**
   * A file where the server writes its own pid: a start script that switches
   * user in a new session (Debian's rabbitmq-server as root) leaves the
   * server outside the child's process group, out of reach of its signals.
   */
  pidFile?: string,
): BrokerServer {
  const kill = async (): Promise<void> => {
    const pid = pidIn(pidFile);
    killGroup(child, 'SIGKILL');
    await stopPid(pid, 'SIGKILL', 5000);
    await exited(child);
  };
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const pid = pidIn(pidFile);
      killGroup(child, 'SIGCONT');
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 10_000);
      await exited(child);
      clearTimeout(timer);
      if (!(await stopPid(pid, 'SIGTERM', 10_000))) await stopPid(pid, 'SIGKILL', 5000);
      if (removeData) rmSync(dataDir, { recursive: true, force: true });
    })());
  return { url, port, process: child, dataDir, kill, stop, [Symbol.asyncDispose]: stop };
}

/**
 * Start `nats-server` with JetStream on a free 127.0.0.1 port. Pass the
 * `port` and `dataDir` of a killed server to restart it with its streams.
 *
 * @example
 * ```ts
 * await using nats = await startNatsServer();
 * const nc = await connect({ servers: nats.url });
 * ```
 */
export async function startNatsServer(
  options: { readonly port?: number; readonly dataDir?: string } = {},
): Promise<BrokerServer> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'raceguard-nats-'));
  const child = spawn(
    'nats-server',
    ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dataDir],
    {
      stdio: ['ignore', 'ignore', 'ignore'],
      detached: true,
    },
  );
  await waitUntilReachable(
    'nats-server',
    child,
    port,
    15_000,
    'install it with `apt-get install -y nats-server`, or set NATS_URL',
  );
  return serverOf(`nats://127.0.0.1:${port}`, port, child, dataDir, options.dataDir === undefined);
}

/**
 * Start a RabbitMQ node (the Debian package's `rabbitmq-server`, which runs
 * as the `rabbitmq` account) on free 127.0.0.1 ports, with its own node
 * name and data directory; the `guest` account works from loopback.
 *
 * @example
 * ```ts
 * await using rabbit = await startRabbitMqServer();
 * const connection = await amqp.connect(rabbit.url);
 * ```
 */
export async function startRabbitMqServer(): Promise<BrokerServer> {
  const port = await freePort();
  const distPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'raceguard-rabbitmq-'));
  if (userInfo().uid === 0) {
    // The server drops to the rabbitmq account; it must own its directory.
    const id = spawnSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' });
    if (id.status === 0 && gid.status === 0)
      chownSync(dataDir, Number(id.stdout), Number(gid.stdout));
  }
  const node = `raceguard-${process.pid}-${port}@localhost`;
  const child = spawn('rabbitmq-server', [], {
    stdio: ['ignore', 'ignore', 'ignore'],
    detached: true,
    env: {
      ...process.env,
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_NODENAME: node,
      RABBITMQ_MNESIA_BASE: join(dataDir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dataDir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dataDir, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: join(dataDir, 'rabbitmq'),
      RABBITMQ_PID_FILE: join(dataDir, 'pid'),
      RABBITMQ_FEATURE_FLAGS_FILE: join(dataDir, 'feature_flags'),
    },
  });
  await waitUntilReachable(
    'rabbitmq-server',
    child,
    port,
    60_000,
    'install it with `apt-get install -y rabbitmq-server`, or set AMQP_URL',
  );
  return serverOf(
    `amqp://guest:guest@127.0.0.1:${port}`,
    port,
    child,
    dataDir,
    true,
    join(dataDir, 'pid'),
  );
}
