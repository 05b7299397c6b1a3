/**
 * The lease lock under its adversary (test/nemesis/lock-nemesis.ts): Redis
 * paused at random moments while workers on two connections contend;
 * fixed seeds here, `npm run nemesis -- --only locks` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import { lockNemesis } from './lock-nemesis.js';

describe(
  'nemesis: lease locks (at most one holder whose signal is not aborted)',
  { timeout: 120_000 },
  () => {
    let redis: TestRedis;
    before(async () => {
      redis = await openTestRedis();
    });
    after(() => redis.close());

    for (const seed of [1, 2, 3]) {
      it(`seed ${seed}: 6 workers, 2 keys, Redis paused at random for 4 s`, async () => {
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
          durationMs: 4000,
          prefix: `nemesis-${seed}-`,
        });
        assert.ok(result.grants >= 10, `too few grants (${result.grants})`);
        assert.ok(result.stalls >= 2, `too few stalls (${result.stalls})`);
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only locks --seed ${seed})`,
        );
      });
    }
  },
);
