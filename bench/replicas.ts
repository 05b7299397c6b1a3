/**
 * Read-your-own-writes strategies on a real streaming replica, side by side
 * in one run: 1,000 sessions, each pausing 20-200 ms between operations as
 * a person would, 10% writes and 90% reads, every read checked against the
 * session's last write, at each replay lag:
 *
 * - `primary-only`: every read on the primary (the floor of correctness, and
 *   the baseline of the ratio);
 * - `random-replica`: every read on the replica (what a plain read-replica
 *   extension does);
 * - `delay-2s`: the primary for 2 s after the session's last write, then
 *   the replica (Rails' default);
 * - `raceguard`: `ReplicaRouter` with the session's token.
 *
 *   npm run bench:replicas [-- --lags 50,500 --sessions 1000 --ops 12 --json]
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { ReplicaRouter } from '../packages/raceguard/dist/postgres/index.js';
import { startReplicatedPostgres } from '../packages/raceguard/dist/testing/index.js';

const { values: args } = parseArgs({
  options: {
    lags: { type: 'string', default: '50,500' },
    sessions: { type: 'string', default: '1000' },
    ops: { type: 'string', default: '12' },
    json: { type: 'boolean', default: false },
  },
});
const lags = args.lags.split(',').map(Number);
const sessions = Number(args.sessions);
const opsPerSession = Number(args.ops);
const log = (line: string): void => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

const pair = await startReplicatedPostgres();
const connect = (url: string): pg.Pool => {
  const pool = new pg.Pool({ connectionString: url, max: 40 });
  pool.on('error', () => undefined);
  return pool;
};
const primary = connect(pair.primaryUrl);
const replica = connect(pair.replicaUrl);
await primary.query('CREATE TABLE profiles (id int PRIMARY KEY, version int NOT NULL)');
await primary.query('INSERT INTO profiles SELECT g, 0 FROM generate_series(0, $1) AS g', [
  sessions - 1,
]);
const count = async (text: string): Promise<number> =>
  Number(((await replica.query(text)).rows[0] as { n: string }).n);
while (
  (await count("SELECT count(*) AS n FROM pg_class WHERE relname = 'profiles'")) === 0 ||
  (await count('SELECT count(*) AS n FROM profiles')) < sessions
) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}

/** Until the replica has replayed everything the primary has written: each run starts even. */
async function caughtUp(): Promise<void> {
  const target = String(
    ((await primary.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0] as { l: string }).l,
  );
  for (;;) {
    const { rows } = await replica.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [
      target,
    ]);
    if ((rows[0] as { ok: boolean }).ok) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// Every connection of both pools open before the first measurement.
await Promise.all(
  [primary, replica].flatMap((pool) =>
    Array.from({ length: 40 }, () => pool.query('SELECT pg_sleep(0.05)')),
  ),
);

type Read = (id: number, session: SessionState) => Promise<{ version: number; replica: boolean }>;
type Write = (id: number, version: number, session: SessionState) => Promise<void>;
interface SessionState {
  token?: string;
  lastWriteAt: number;
}

const select = 'SELECT version FROM profiles WHERE id = $1';
const update = 'UPDATE profiles SET version = $1 WHERE id = $2';
const versionOf = (result: pg.QueryResult): number =>
  Number((result.rows[0] as { version: number }).version);

function strategies(router: ReplicaRouter): Record<string, { read: Read; write: Write }> {
  const plainWrite: Write = async (id, version, session) => {
    await primary.query(update, [version, id]);
    session.lastWriteAt = performance.now();
  };
  return {
    'primary-only': {
      read: async (id) => ({
        version: versionOf(await primary.query(select, [id])),
        replica: false,
      }),
      write: plainWrite,
    },
    'random-replica': {
      read: async (id) => ({
        version: versionOf(await replica.query(select, [id])),
        replica: true,
      }),
      write: plainWrite,
    },
    'delay-2s': {
      read: async (id, session) => {
        const onPrimary = performance.now() - session.lastWriteAt < 2000;
        const pool = onPrimary ? primary : replica;
        return { version: versionOf(await pool.query(select, [id])), replica: !onPrimary };
      },
      write: plainWrite,
    },
    raceguard: {
      read: async (id, session) => {
        const { result, source } = await router.read((db) => db.query(select, [id]), {
          token: session.token,
        });
        return {
          version: Number((result.rows[0] as { version: number }).version),
          replica: source === 'replica',
        };
      },
      write: async (id, version, session) => {
        const { token } = await router.write((db) => db.query(update, [version, id]), {
          token: session.token,
        });
        session.token = token;
        session.lastWriteAt = performance.now();
      },
    },
  };
}

interface Result {
  strategy: string;
  lagMs: number;
  readsPerSec: number;
  replicaShare: number;
  staleReads: number;
  ratioToPrimaryOnly: number;
}
const results: Result[] = [];
const think = (): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 180));

for (const lagMs of lags) {
  await pair.setApplyDelay(lagMs);
  const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 50, pollMs: 10 });
  const rows: Omit<Result, 'ratioToPrimaryOnly'>[] = [];
  for (const [name, strategy] of Object.entries(strategies(router))) {
    await caughtUp();
    let reads = 0;
    let fromReplica = 0;
    let stale = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: sessions }, async (_, id) => {
        const state: SessionState = { lastWriteAt: Number.NEGATIVE_INFINITY };
        let version = versionOf(await primary.query(select, [id]));
        for (let op = 0; op < opsPerSession; op++) {
          await think();
          if (Math.random() < 0.1) {
            version++;
            await strategy.write(id, version, state);
          } else {
            const read = await strategy.read(id, state);
            reads++;
            if (read.replica) fromReplica++;
            if (read.version < version) stale++;
          }
        }
      }),
    );
    const readsPerSec = (reads * 1000) / (performance.now() - started);
    rows.push({
      strategy: name,
      lagMs,
      readsPerSec: Math.round(readsPerSec),
      replicaShare: Math.round((fromReplica / reads) * 1000) / 1000,
      staleReads: stale,
    });
    log(
      `lag ${lagMs} ms, ${name}: ${stale} stale of ${reads} reads, ${Math.round((fromReplica / reads) * 100)}% from the replica`,
    );
  }
  await router.close();
  const floor = rows.find((r) => r.strategy === 'primary-only')?.readsPerSec ?? 1;
  for (const row of rows) {
    results.push({ ...row, ratioToPrimaryOnly: Math.round((row.readsPerSec / floor) * 100) / 100 });
  }
}
await primary.end();
await replica.end();
await pair.stop();

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      ['strategy', 'lag ms', 'reads/s', '× primary-only', 'from replica', 'stale reads'],
      results.map((r) => [
        r.strategy,
        String(r.lagMs),
        String(r.readsPerSec),
        r.ratioToPrimaryOnly.toFixed(2),
        `${(r.replicaShare * 100).toFixed(1)}%`,
        String(r.staleReads),
      ]),
    )}\n\n${sessions} sessions x ${opsPerSession} operations (10% writes), 20-200 ms between operations; reads/s over each run's wall time (the sessions pace themselves: a strategy that makes reads wait shows here)\n`,
  );
}
