/**
 * The cache under its adversary (test/nemesis/cache-nemesis.ts): fixed seeds
 * here, `npm run nemesis -- --only cache` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cacheNemesis } from './cache-nemesis.js';

describe(
  'nemesis: cache (no read older than an invalidation that returned, beyond its allowed window)',
  { timeout: 120_000 },
  () => {
    for (const seed of [1, 2]) {
      it(`seed ${seed}: 6 readers with slow loaders, 2 writers, two instances (one with an in-process tier), 4 s of Redis pauses and a silenced bus`, async () => {
        const result = await cacheNemesis(seed, 4000);
        assert.ok(result.reads >= 100, `too few reads (${result.reads})`);
        assert.ok(result.writes >= 10, `too few writes (${result.writes})`);
        assert.ok(result.faults >= 2, `too few faults (${result.faults})`);
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only cache --seed ${seed})`,
        );
      });
    }
  },
);
