/**
 * Every guarantee's adversary by name, for `npm run nemesis`: each takes a
 * database for its scratch tables and a seed, and reports what it checked
 * (units) and every violation its history checker found.
 */
import type { TestDatabase } from '../helpers/database.js';
import { idempotencyNemesis } from './idempotency-nemesis.js';
import { outboxNemesis } from './outbox-nemesis.js';
import { pipelineNemesis } from './pipeline-nemesis.js';
import { connectNats } from '../helpers/nats.js';
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
  /** Over both brokers, one run each per seed; violations name the broker. */
  async pipeline(db, seed) {
    const [rabbit, nats] = await Promise.all([connectRabbit(), connectNats()]);
    try {
      const overRabbit = await pipelineNemesis(db.pool, { rabbit }, { seed, durationMs: 8000 });
      const overNats = await pipelineNemesis(db.pool, { nats }, { seed, durationMs: 8000 });
      return {
        units: overRabbit.committed + overNats.committed,
        violations: [
          ...overRabbit.violations.map((v) => `RabbitMQ: ${v}`),
          ...overNats.violations.map((v) => `NATS: ${v}`),
        ],
      };
    } finally {
      await rabbit.close().catch(() => undefined);
      await nats.close().catch(() => undefined);
    }
  },
  async locks(_db, seed) {
    const result = await redisLockNemesis(seed, 5000);
    return { units: result.grants, violations: result.violations };
  },
};
