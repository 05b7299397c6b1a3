/**
 * Every guarantee's adversary by name, for `npm run nemesis`: each takes a
 * database for its scratch tables and a seed, and reports what it checked
 * (units) and every violation its history checker found.
 */
import type { TestDatabase } from '../helpers/database.js';
import { combinerNemesis } from './combiner-nemesis.js';
import { cacheNemesis } from './cache-nemesis.js';
import { createReplicaNemesisSchema, replicaNemesis } from './replica-nemesis.js';
import { startReplicatedPostgres } from '../../packages/raceguard/src/testing/replication.js';
import { idempotencyNemesis } from './idempotency-nemesis.js';
import { outboxNemesis } from './outbox-nemesis.js';
import { pipelineNemesis } from './pipeline-nemesis.js';
import { connectNats } from '../helpers/nats.js';
import { connectRabbit } from '../helpers/rabbit.js';
import { redisLockNemesis } from './redis-lock-nemesis.js';
import { openTestRedis } from '../helpers/redis.js';
import {
  createFencingTable,
  fencingNemesis,
  postgresFencingTarget,
  redisFencingTarget,
} from './fencing-nemesis.js';

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
  /** Fenced writes on PostgreSQL and Redis, 400 rounds each per seed. */
  async fencing(db, seed) {
    const table = `nemesis_fenced_${seed}`;
    await createFencingTable(db.pool, table, 4);
    const redis = await openTestRedis();
    try {
      const results = [
        await fencingNemesis(postgresFencingTarget(db.pool, table), { seed, rounds: 400 }),
        await fencingNemesis(redisFencingTarget(redis, `${redis.prefix}fenced:`), {
          seed,
          rounds: 400,
        }),
      ];
      return {
        units: results.reduce((n, r) => n + r.writes, 0),
        violations: results.flatMap((r) => r.violations),
      };
    } finally {
      await redis.close();
      await db.pool.query(`DROP TABLE ${table}`);
    }
  },
  async combiner(db, seed) {
    const result = await combinerNemesis(db, {
      seed,
      durationMs: 5000,
      table: `nemesis_combiner_${seed}`,
    });
    return { units: result.requests, violations: result.violations };
  },
  /** On a primary and standby of its own (started per seed: restarts leave no state behind). */
  async replica(_db, seed) {
    const pair = await startReplicatedPostgres();
    try {
      await createReplicaNemesisSchema(pair);
      const result = await replicaNemesis(pair, { seed, durationMs: 6000 });
      return { units: result.reads, violations: result.violations };
    } finally {
      await pair.stop();
    }
  },
  async cache(_db, seed) {
    const result = await cacheNemesis(seed, 5000);
    return { units: result.reads, violations: result.violations };
  },
};
