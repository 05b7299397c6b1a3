/**
 * Every guarantee's adversary by name, for `npm run nemesis`: each takes a
 * database for its scratch tables and a seed, and reports what it checked
 * (units) and every violation its history checker found.
 */
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import type { TestDatabase } from '../helpers/database.js';
import { openTestRedis } from '../helpers/redis.js';
import { lockNemesis } from './lock-nemesis.js';
import { outboxNemesis } from './outbox-nemesis.js';

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
  async locks(_db, seed) {
    const redis = await openTestRedis();
    try {
      const lockers = [0, 1].map(
        () =>
          new RedisLock({
            client: redis.connect(),
            subscriber: redis.connect(),
            prefix: redis.prefix,
          }),
      );
      const pid = redis.server.process.pid as number;
      const result = await lockNemesis({
        seed,
        lockers,
        pause: () => process.kill(pid, 'SIGSTOP'),
        resume: () => process.kill(pid, 'SIGCONT'),
        durationMs: 5000,
        prefix: `nemesis-${seed}-`,
      });
      return { units: result.grants, violations: result.violations };
    } finally {
      await redis.close();
    }
  },
};
