/**
 * A throwaway `redis-server` (from the Debian package `redis-server`) on a
 * free loopback port, for tests, the lab and fault injection: stop it, kill
 * it, pause it.
 */
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

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
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
  const port = options.port ?? (await freePort());
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
  child.once('error', (error) => (failure = error));
  const started = performance.now();
  while (!(await ping(port))) {
    if (failure !== undefined || child.exitCode !== null) {
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
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGCONT');
      child.kill('SIGTERM');
    }));
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    process: child,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
