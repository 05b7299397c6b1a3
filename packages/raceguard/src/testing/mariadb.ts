/**
 * A throwaway MariaDB (`mariadbd` from the Debian package `mariadb-server`)
 * on a free loopback port, with its own data directory, for tests and the
 * lab on machines that run no MySQL server.
 */
import { stopper, untilReady } from './child-server.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, RaceguardError, messageOf } from '../core/errors.js';
import { reachable } from './brokers.js';
import { freePort } from './free-port.js';

/** A running MariaDB started by raceguard. */
export interface MariaDbServer extends AsyncDisposable {
  /** `mysql://root@127.0.0.1:<port>/test` */
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Stop it and remove its data directory. Idempotent. */
  stop(): Promise<void>;
}

/** MariaDB could not be started. */
export class MariaDbStartError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_MARIADB_START_FAILED', message, { cause });
  }
}

/**
 * Start `mariadbd` on a free 127.0.0.1 port with a fresh data directory,
 * root without a password, and a database `test`.
 *
 * @example
 * ```ts
 * await using mariadb = await startMariaDbServer();
 * const pool = mysql.createPool(mariadb.url);
 * ```
 */
export async function startMariaDbServer(): Promise<MariaDbServer> {
  const dir = mkdtempSync(join(tmpdir(), 'raceguard-mariadb-'));
  const data = join(dir, 'data');
  const socket = join(dir, 'mariadb.sock');
  const user = process.getuid?.() === 0 ? ['--user=root'] : [];
  const install = spawnSync(
    'mariadb-install-db',
    [
      '--no-defaults',
      `--datadir=${data}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      ...user,
    ],
    { encoding: 'utf8' },
  );
  if (install.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new MariaDbStartError(
      `mariadb-install-db failed: ${install.error === undefined ? install.stderr : messageOf(install.error)}` +
        ' (install it with `apt-get install -y mariadb-server`, or set MYSQL_URL)',
      install.error,
    );
  }
  const port = await freePort();
  const child = spawn(
    'mariadbd',
    [
      '--no-defaults',
      `--datadir=${data}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      '--skip-name-resolve',
      '--innodb-buffer-pool-size=64M',
      ...user,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  await untilReady(child, {
    ready: () => reachable(port),
    timeoutMs: 30_000,
    dir,
    exited: (why, cause) => new MariaDbStartError(`mariadbd exited: ${why}`, cause),
    silent: () => new MariaDbStartError(`mariadbd on port ${port} did not listen within 30 s`),
  });
  const created = spawnSync(
    'mariadb',
    [`--socket=${socket}`, '-uroot', '-e', 'CREATE DATABASE IF NOT EXISTS test'],
    {
      encoding: 'utf8',
    },
  );
  if (created.status !== 0) {
    child.kill('SIGKILL');
    throw new MariaDbStartError(`could not create the database test: ${created.stderr}`);
  }
  const stop = stopper(child, dir);
  return {
    url: `mysql://root@127.0.0.1:${port}/test`,
    port,
    process: child,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Whether a MySQL server answers at `url` and lets the user in (a freshly
 * installed Debian MariaDB listens on 3306 but lets root in only through its
 * socket).
 *
 * @example
 * ```ts
 * const url = (await mysqlReachable('mysql://root@127.0.0.1:3306/test')) ? 'mysql://root@127.0.0.1:3306/test' : (await startMariaDbServer()).url;
 * ```
 */
export async function mysqlReachable(url: string): Promise<boolean> {
  if (typeof url !== 'string' || !url.startsWith('mysql://')) {
    throw new InvalidArgumentError('url', 'a mysql:// URL', url);
  }
  const address = new URL(url);
  if (!(await reachable(Number(address.port || 3306), address.hostname))) return false;
  const spawned = spawnSync(
    'mariadb',
    [
      `--host=${address.hostname}`,
      `--port=${address.port || 3306}`,
      `--user=${decodeURIComponent(address.username || 'root')}`,
      ...(address.password === '' ? [] : [`--password=${decodeURIComponent(address.password)}`]),
      '--connect-timeout=3',
      '-e',
      'SELECT 1',
    ],
    { encoding: 'utf8', timeout: 10_000 },
  );
  return spawned.status === 0;
}
