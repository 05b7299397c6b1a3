/**
 * The lease lock under its adversary (test/nemesis/lock-nemesis.ts): Redis
 * paused, or one locker's connection silenced, at random while workers on
 * two connections contend; fixed seeds here, `npm run nemesis -- --only
 * locks` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redisLockNemesis } from './redis-lock-nemesis.js';

describe(
  'nemesis: lease locks (at most one holder whose signal is not aborted)',
  { timeout: 120_000 },
  () => {
    for (const seed of [1, 2, 3]) {
      it(`seed ${seed}: 6 workers, 2 keys, 4 s of random pauses and silenced connections`, async () => {
        const result = await redisLockNemesis(seed, 4000);
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
