/**
 * A throwaway `redis-server` (from the Debian package `redis-server`) on a
 * free loopback port, for tests, the lab and fault injection: stop it, kill
 * it, pause it.
 */
import { stopper } from './child-server.js';
import { freePort } from './free-port.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { RaceguardError, messageOf } from '../core/errors.js';
import { sleep } from '../core/abort.js';

/** A running `redis-server` process started by raceguard. */
export interface RedisServer extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Stop it (SIGTERM) and wait for it to exit. Idempotent. */
  stop(): Promise<void>;
}

/** `redis-server` could not be started. */
export class RedisStartError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_REDIS_START_FAILED', message, { cause });
  }
}

/**
 * The process id of the Redis server answering on `port` (from `INFO
 * server`), or `undefined` when none answers. A server that is not the one
 * just started (another test process took the port first) is told apart by it.
 */
function serverPid(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let text = '';
    const done = (pid: number | undefined): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('INFO server\r\n'));
    socket.on('data', (data) => {
      text += data.toString();
      const found = /process_id:(\d+)/.exec(text);
      if (found !== null) done(Number(found[1]));
      else if (text.startsWith('-') || text.length > 65_536) done(undefined);
    });
    socket.once('error', () => resolve(undefined));
    socket.once('timeout', () => done(undefined));
  });
}

/**
 * Start `redis-server` on a free 127.0.0.1 port with persistence off.
 *
 * @example
 * ```ts
 * await using redis = await startRedisServer();
 * const client = new Redis(redis.url);
 * ```
 */
export async function startRedisServer(
  options: { readonly port?: number } = {},
): Promise<RedisServer> {
  // A free port can be taken by another process before the server binds it: try another.
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const started = await launch(port);
    if (started !== 'port taken') return started;
    if (options.port !== undefined || attempt === 5)
      throw new RedisStartError(`redis-server could not bind 127.0.0.1:${port}: the port is taken`);
  }
}

/** Start `redis-server` on `port` and wait until it is the one answering there. */
async function launch(port: number): Promise<RedisServer | 'port taken'> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'yes',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let failure: unknown;
  let stderr = '';
  child.once('error', (error) => (failure = error));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const started = performance.now();
  for (;;) {
    const pid = await serverPid(port);
    if (pid !== undefined && pid === child.pid) break;
    if (failure !== undefined || child.exitCode !== null || pid !== undefined) {
      // Another server answers on the port (or ours could not bind it).
      if (pid !== undefined || /in use/i.test(stderr)) {
        child.kill('SIGKILL');
        return 'port taken';
      }
      throw new RedisStartError(
        `could not start redis-server: ${failure === undefined ? `exited with ${child.exitCode}` : messageOf(failure)}` +
          ' (install it with `apt-get install -y redis-server`, or set REDIS_URL)',
        failure,
      );
    }
    if (performance.now() - started > 10_000) {
      child.kill('SIGKILL');
      throw new RedisStartError(`redis-server on port ${port} did not answer within 10 s`);
    }
    await sleep(20);
  }
  const stop = stopper(child);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    process: child,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
