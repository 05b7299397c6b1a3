/**
 * Idempotency under its adversary (test/nemesis/idempotency-nemesis.ts):
 * fixed seeds here, `npm run nemesis -- --only idempotency` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idempotencyNemesis } from './idempotency-nemesis.js';

describe(
  'nemesis: idempotency (one execution per key, or evidence of a stall past the lease)',
  { timeout: 120_000 },
  () => {
    for (const seed of [1, 2]) {
      it(`seed ${seed}: 8 workers over 30 keys, 4 s of store pauses and silenced connections`, async () => {
        const result = await idempotencyNemesis(seed, 4000);
        assert.ok(result.executions >= 10, `too few executions (${result.executions})`);
        assert.ok(result.stalls >= 2, `too few stalls (${result.stalls})`);
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only idempotency --seed ${seed})`,
        );
      });
    }
  },
);
