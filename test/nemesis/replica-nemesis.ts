/**
 * Read-your-writes through replica sessions, under its adversary: from one
 * seed, sessions on a real primary and hot standby write counters, read
 * them, call a function that writes from a `SELECT`, and hand their token
 * to a new session (as a cookie carries it to the next request), while the
 * standby's replay is delayed, paused, its backends frozen (SIGSTOP) and
 * the standby stopped and started, at random. Checked on every read: the
 * session sees each counter at least at the value its own writes and
 * earlier reads saw (read-your-writes and monotonic reads).
 */
import pg from 'pg';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import {
  ReplicaRouter,
  type RoutedSession,
} from '../../packages/raceguard/src/postgres/replica-router.js';
import type { ReplicatedPostgres } from '../../packages/raceguard/src/testing/replication.js';

export interface ReplicaNemesisResult {
  readonly seed: number;
  readonly reads: number;
  readonly writes: number;
  readonly faults: number;
  /** Statements that failed (counted, not violations: the caller is told). */
  readonly errors: number;
  readonly violations: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const COUNTERS = 6;

/** The counters and the writing function; call once per pair, then wait for the standby. */
export async function createReplicaNemesisSchema(pair: ReplicatedPostgres): Promise<void> {
  const primary = new pg.Pool({ connectionString: pair.primaryUrl, max: 1 });
  const replica = new pg.Pool({ connectionString: pair.replicaUrl, max: 1 });
  try {
    await primary.query(
      `CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
       INSERT INTO counters SELECT g, 0 FROM generate_series(0, ${COUNTERS - 1}) AS g;
       CREATE FUNCTION bump(k int) RETURNS bigint LANGUAGE sql AS
         $$ UPDATE counters SET v = v + 1 WHERE id = k RETURNING v $$`,
    );
    for (;;) {
      const { rows } = await replica
        .query("SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'bump'")
        .catch(() => ({ rows: [{ n: 0 }] }));
      if (rows[0]?.n === 1) break;
      await sleep(10);
    }
  } finally {
    await Promise.all([primary.end(), replica.end()]);
  }
}

export async function replicaNemesis(
  pair: ReplicatedPostgres,
  options: {
    readonly seed: number;
    readonly durationMs: number;
    /** Control: plain reads go straight to the standby, not through the session. */
    readonly readReplicaDirectly?: boolean;
  },
): Promise<ReplicaNemesisResult> {
  const { seed } = options;
  const random = createRandom(seed);
  const pools: pg.Pool[] = [];
  const pool = (url: string, max: number): pg.Pool => {
    const p = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 2000 });
    p.on('error', () => undefined);
    pools.push(p);
    return p;
  };
  const primary = pool(pair.primaryUrl, 20);
  const replica = pool(pair.replicaUrl, 20);
  const router = new ReplicaRouter({
    primary,
    replicas: [replica],
    maxWaitMs: 20 + random.int(100),
    pollMs: 10,
    replicaTimeoutMs: 300,
  });
  const violations: string[] = [];
  let reads = 0;
  let writes = 0;
  let faults = 0;
  let errors = 0;
  const end = performance.now() + options.durationMs;

  const worker = async (id: number): Promise<void> => {
    const r = createRandom(seed * 977 + id);
    let session: RoutedSession = router.session();
    /** The lowest value each counter may show this session. */
    const floor = new Array<bigint>(COUNTERS).fill(0n);
    for (let n = 0; performance.now() < end && violations.length < 20; n++) {
      const k = r.int(COUNTERS);
      const op = r.int(10);
      try {
        if (op < 3) {
          const { rows } = await session.query(
            'UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v',
            [k],
          );
          writes++;
          floor[k] = BigInt(rows[0]?.v as string);
        } else if (op === 3) {
          const { rows } = await session.query('SELECT bump($1) AS v', [k]);
          writes++;
          floor[k] = BigInt(rows[0]?.v as string);
        } else if (op === 4) {
          // The next request of the same user: a new session from the token it was sent.
          session = router.session(session.token);
        } else {
          const read = 'SELECT v FROM counters WHERE id = $1';
          const { rows } =
            options.readReplicaDirectly === true
              ? await replica.query(read, [k])
              : await session.query(read, [k]);
          reads++;
          const v = BigInt(rows[0]?.v as string);
          if (v < (floor[k] as bigint)) {
            violations.push(
              `session ${id} read counter ${k} = ${v} after seeing ${floor[k]} (step ${n})`,
            );
          } else floor[k] = v;
        }
      } catch {
        errors++;
      }
      if (r.int(4) === 0) await sleep(r.int(20));
    }
  };

  const admin = pool(pair.replicaUrl, 1);
  const stopped = new Set<number>();
  const faultsOf = [
    async () => {
      await pair.setApplyDelay(random.int(600));
    },
    async () => {
      await pair.pauseReplay();
      await sleep(100 + random.int(700));
      await pair.resumeReplay();
    },
    async () => {
      const { rows } = await admin.query(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
      );
      const pid = rows[random.int(Math.max(1, rows.length))]?.pid as number | undefined;
      if (pid === undefined) return;
      process.kill(pid, 'SIGSTOP');
      stopped.add(pid);
      await sleep(100 + random.int(700));
      process.kill(pid, 'SIGCONT');
      stopped.delete(pid);
    },
    async () => {
      await pair.stopReplica();
      await sleep(random.int(500));
      await pair.startReplica();
    },
  ];
  const nemesis = async (): Promise<void> => {
    while (performance.now() < end) {
      await sleep(50 + random.int(300));
      if (performance.now() >= end) break;
      // A restart of the standby is the heaviest fault: one in ten.
      const pick = random.int(10) === 0 ? 3 : random.int(3);
      faults++;
      await (faultsOf[pick] as () => Promise<void>)().catch(() => undefined);
    }
  };
  try {
    await Promise.all([nemesis(), ...Array.from({ length: 12 }, (_, i) => worker(i))]);
  } finally {
    for (const pid of stopped) process.kill(pid, 'SIGCONT');
    await pair.resumeReplay().catch(() => undefined);
    await pair.setApplyDelay(0).catch(() => undefined);
    await router.close();
    for (const p of pools) await p.end();
  }
  return { seed, reads, writes, faults, errors, violations };
}
