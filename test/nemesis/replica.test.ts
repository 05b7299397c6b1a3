/**
 * Replica sessions under their adversary (test/nemesis/replica-nemesis.ts)
 * on a primary and a hot standby started for this file: fixed seeds here,
 * `npm run nemesis -- --only replica` runs fresh ones. The control reads
 * the standby directly under the same faults and must see stale values.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  startReplicatedPostgres,
  type ReplicatedPostgres,
} from '../../packages/raceguard/src/testing/replication.js';
import { createReplicaNemesisSchema, replicaNemesis } from './replica-nemesis.js';

describe(
  'nemesis: replica sessions (read-your-writes, monotonic reads)',
  { timeout: 240_000 },
  () => {
    let pair: ReplicatedPostgres;
    before(async () => {
      pair = await startReplicatedPostgres();
      await createReplicaNemesisSchema(pair);
    });
    after(() => pair.stop());

    for (const seed of [1, 2]) {
      it(`seed ${seed}: 12 sessions, 4 s of replay delays, pauses, frozen backends and restarts`, async () => {
        const result = await replicaNemesis(pair, { seed, durationMs: 4000 });
        assert.ok(result.reads >= 200, `too few reads (${result.reads})`);
        assert.ok(result.faults >= 4, `too few faults (${result.faults})`);
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only replica --seed ${seed})`,
        );
      });
    }

    it('control: the same faults with reads sent straight to the standby give stale reads', async () => {
      const result = await replicaNemesis(pair, {
        seed: 1,
        durationMs: 3000,
        readReplicaDirectly: true,
      });
      assert.ok(result.violations.length > 0, `no stale read in ${result.reads} reads`);
    });
  },
);
