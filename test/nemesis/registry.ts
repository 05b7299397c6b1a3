/**
 * Every guarantee's adversary by name, for `npm run nemesis`: each takes a
 * database for its scratch tables and a seed, and reports what it checked
 * (units) and every violation its history checker found.
 */
import type { TestDatabase } from '../helpers/database.js';
import { idempotencyNemesis } from './idempotency-nemesis.js';
import { outboxNemesis } from './outbox-nemesis.js';
import { pipelineNemesis } from './pipeline-nemesis.js';
import { connectRabbit } from '../helpers/rabbit.js';
import { redisLockNemesis } from './redis-lock-nemesis.js';

export interface NemesisRun {
  readonly units: number;
  readonly violations: readonly string[];
}

export const NEMESES: Record<string, (db: TestDatabase, seed: number) => Promise<NemesisRun>> = {
  async outbox(db, seed) {
    const result = await outboxNemesis(db.pool, {
      seed,
      steps: 600,
      table: `nemesis_outbox_${seed}`,
    });
    await db.pool.query(
      `DROP TABLE nemesis_outbox_${seed}, nemesis_outbox_${seed}_keys, nemesis_outbox_${seed}_cursors`,
    );
    return { units: result.committed, violations: result.violations };
  },
  async idempotency(_db, seed) {
    const result = await idempotencyNemesis(seed, 5000);
    return { units: result.executions, violations: result.violations };
  },
  async pipeline(db, seed) {
    const connection = await connectRabbit();
    try {
      const result = await pipelineNemesis(db.pool, connection, { seed, durationMs: 8000 });
      return { units: result.committed, violations: result.violations };
    } finally {
      await connection.close().catch(() => undefined);
    }
  },
  async locks(_db, seed) {
    const result = await redisLockNemesis(seed, 5000);
    return { units: result.grants, violations: result.violations };
  },
};
