/**
 * The PostgreSQL the benchmarks measure against, and what it can take.
 *
 * Throughput ratios only mean something against production durability: a
 * commit that waits for the disk costs several times one that does not, and
 * every ratio to a floor of commits moves with it. So the benchmarks start
 * their own embedded server with `fsync`, `synchronous_commit` and
 * `full_page_writes` on (unless `DATABASE_URL` or `--database` names one),
 * and print the settings they ran against beside the results.
 *
 * A shared server may have other clients: the benchmarks size their pools
 * from the connection slots actually free, and say what they reduced,
 * instead of failing on "too many clients".
 */
import pg from 'pg';
import { usePostgres, type PostgresServer } from '../packages/raceguard/dist/testing/postgres.js';

/** The embedded server's `max_connections`: 4 processes × 16 clients, 64 in one, pools and admin beside. */
const EMBEDDED_MAX_CONNECTIONS = 400;

/** What a benchmark ran against. */
export interface ServerSettings {
  readonly embedded: boolean;
  readonly fsync: string;
  readonly synchronousCommit: string;
  readonly fullPageWrites: string;
  readonly maxConnections: number;
  /** Slots other sessions held when the benchmark looked. */
  readonly inUse: number;
  /** Slots a benchmark may open now (neither reserved for superusers nor in use). */
  readonly free: number;
}

/** The server named by `url` or `DATABASE_URL`, else an embedded one with production durability. */
export async function benchPostgres(url?: string): Promise<PostgresServer> {
  return usePostgres({
    ...(url !== undefined && { url }),
    durable: true,
    maxConnections: EMBEDDED_MAX_CONNECTIONS,
  });
}

/** Reads the server's durability settings and its free connection slots. */
export async function serverSettings(server: PostgresServer): Promise<ServerSettings> {
  const client = new pg.Client({ connectionString: server.url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{
      fsync: string;
      synchronous_commit: string;
      full_page_writes: string;
      max_connections: string;
      reserved: string;
      in_use: number;
    }>(
      `SELECT current_setting('fsync') AS fsync,
              current_setting('synchronous_commit') AS synchronous_commit,
              current_setting('full_page_writes') AS full_page_writes,
              current_setting('max_connections') AS max_connections,
              current_setting('superuser_reserved_connections') AS reserved,
              (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use`,
    );
    const row = rows[0]!;
    const maxConnections = Number(row.max_connections);
    return {
      embedded: server.embedded,
      fsync: row.fsync,
      synchronousCommit: row.synchronous_commit,
      fullPageWrites: row.full_page_writes,
      maxConnections,
      inUse: row.in_use,
      // This client's own slot is free again once it disconnects.
      free: Math.max(0, maxConnections - Number(row.reserved) - row.in_use + 1),
    };
  } finally {
    await client.end();
  }
}

/** One line for the report: where, how durable, how many slots. */
export function describeServer(settings: ServerSettings): string {
  const durable =
    settings.fsync === 'on' && settings.synchronousCommit !== 'off' ? 'durable' : 'NOT durable';
  return (
    `PostgreSQL ${settings.embedded ? 'embedded' : 'from DATABASE_URL'}: ${durable} ` +
    `(fsync ${settings.fsync}, synchronous_commit ${settings.synchronousCommit}, ` +
    `full_page_writes ${settings.fullPageWrites}); max_connections ${settings.maxConnections}, ` +
    `${settings.inUse} in use by others, ${settings.free} free`
  );
}

/**
 * Fits the clients a benchmark wants into the free slots, keeping `overhead`
 * for its own pools and admin connections: each count above what fits is
 * reduced to it. Returns the counts and a line saying what was reduced, if
 * anything.
 */
export function fitClients(
  wanted: readonly number[],
  free: number,
  overhead: number,
): { counts: number[]; reduced: string | undefined } {
  const room = Math.max(1, free - overhead);
  const counts = wanted.map((count) => Math.min(count, room));
  const cut = wanted.filter((count, index) => counts[index] !== count);
  return {
    counts,
    reduced:
      cut.length === 0
        ? undefined
        : `the server has ${free} free connection slots (${overhead} kept for pools): ${cut.join(', ')} client(s) reduced to ${room}`,
  };
}
