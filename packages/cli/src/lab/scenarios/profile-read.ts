/**
 * Profile update, then read: each person saves a new name (a write on the
 * primary) and reads their profile back at once and again a moment later,
 * while the replica replays every commit 600 ms late. Reading any replica
 * shows the old name at once; "the primary for 300 ms after a write" (a
 * fixed window, as Rails keeps one of 2 s) shows it when the person comes
 * back 400 ms later; the session token of `ReplicaRouter` never does, and
 * still sends the later visit (850 ms) to the replica, which has the write
 * by then.
 */
import { ReplicaRouter } from 'raceguard/postgres';
import type {
  LabReplicas,
  ReplicaScenario,
  ReplicaTrial,
  ReplicaTrialContext,
} from '../replica-scenario.js';
import { countAnomaly } from '../scenario.js';

/** The standby's replay lag during the trials. */
const LAG_MS = 600;
/** The fixed window of `primary-window`: shorter than the lag, as any guess is for someone. */
const WINDOW_MS = 300;
/** When the person comes back to the page. */
const RETURN_MS = 400;
/** A later visit, after the replica has caught up: every strategy may use it then. */
const LATER_MS = LAG_MS + 250;

/** Until the standby has replayed everything the primary has written. */
async function caughtUp(replicas: LabReplicas): Promise<void> {
  const { rows } = await replicas.primary.query('SELECT pg_current_wal_lsn()::text AS lsn');
  const target = (rows[0] as { lsn: string }).lsn;
  for (;;) {
    const { rows: done } = await replicas.replica.query(
      'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok',
      [target],
    );
    if ((done[0] as { ok: boolean }).ok) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function runTrial(context: ReplicaTrialContext): Promise<ReplicaTrial> {
  const { replicas, strategy, keys } = context;
  await caughtUp(replicas);
  const { primary, replica } = replicas;
  const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 50, pollMs: 10 });
  const run = Math.random().toString(36).slice(2, 8);
  const latenciesMs: number[] = [];
  let stale = 0;
  let reads = 0;
  let replicaReads = 0;
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: keys }, async (_, i) => {
        const id = i + 1;
        const name = `${run}-${id}`;
        let token: string | undefined;
        let wroteAt = 0;
        const update = 'UPDATE lab_profiles SET name = $1 WHERE id = $2';
        if (strategy === 'session-token') {
          ({ token } = await router.write((db) => db.query(update, [name, id])));
        } else {
          await primary.query(update, [name, id]);
        }
        wroteAt = performance.now();
        const readBack = async (): Promise<void> => {
          const select = 'SELECT name FROM lab_profiles WHERE id = $1';
          const begun = performance.now();
          let seen: unknown;
          if (strategy === 'session-token') {
            const { result, source } = await router.read((db) => db.query(select, [id]), {
              token,
            });
            seen = result.rows[0]?.name;
            if (source === 'replica') replicaReads++;
          } else {
            const onPrimary =
              strategy === 'primary-window' && performance.now() - wroteAt < WINDOW_MS;
            const { rows } = await (onPrimary ? primary : replica).query<{ name: string }>(select, [
              id,
            ]);
            seen = rows[0]?.name;
            if (!onPrimary) replicaReads++;
          }
          latenciesMs.push(performance.now() - begun);
          reads++;
          if (seen !== name) stale++;
        };
        await readBack(); // the page reloads after saving
        await new Promise((resolve) =>
          setTimeout(resolve, RETURN_MS - (performance.now() - wroteAt)),
        );
        await readBack(); // the person comes back to it
        await new Promise((resolve) =>
          setTimeout(resolve, LATER_MS - (performance.now() - wroteAt)),
        );
        await readBack(); // and again later: the replica has it by now
      }),
    );
  } finally {
    await router.close();
  }
  const anomalies: Record<string, number> = {};
  countAnomaly(anomalies, 'stale-read', stale);
  return {
    anomalies,
    reads,
    replicaReads,
    writes: keys,
    latenciesMs,
    durationMs: performance.now() - started,
  };
}

export const profileRead: ReplicaScenario = {
  shape: 'replicas',
  name: 'profile-read',
  title: 'Profile update, then read, with a replica replaying 600 ms late',
  invariant: 'a person who saved a new name never reads the old one afterwards',
  strategies: ['unsafe', 'primary-window', 'session-token'],
  async createSchema(replicas) {
    await replicas.setApplyDelay(0);
    await replicas.primary.query('DROP TABLE IF EXISTS lab_profiles');
    await replicas.primary.query(
      'CREATE TABLE lab_profiles (id int PRIMARY KEY, name text NOT NULL)',
    );
    await replicas.primary.query(
      "INSERT INTO lab_profiles SELECT g, 'initial' FROM generate_series(1, 1000) AS g",
    );
    await caughtUp(replicas);
    await replicas.setApplyDelay(LAG_MS);
  },
  runTrial,
};
