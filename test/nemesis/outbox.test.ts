/**
 * The outbox relay under its adversary (test/nemesis/outbox-nemesis.ts):
 * fixed seeds here; `npm run nemesis -- --seconds N` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { checkOrderedDelivery, outboxNemesis } from './outbox-nemesis.js';

describe(
  'nemesis: outbox + relay (every committed message applied once, in commit order)',
  { timeout: 240_000 },
  () => {
    let db: TestDatabase;
    before(async () => {
      db = await openTestDatabase(12);
    });
    after(() => db.close());

    it('control: the checker sees a skipped sequence, a reordering and a rolled-back message', () => {
      const m = (key: string, seq: number, payload: string) => ({
        id: `${key}:${seq}`,
        key,
        seq,
        type: 't',
        payload,
        headers: {},
      });
      const committed = new Map([
        ['k#1', 'a'],
        ['k#2', 'b'],
        ['k#3', 'c'],
      ]);
      assert.deepEqual(
        checkOrderedDelivery(
          [m('k', 1, 'a'), m('k', 2, 'b'), m('k', 1, 'a'), m('k', 3, 'c')],
          committed,
        ),
        [],
      );
      assert.match(
        checkOrderedDelivery([m('k', 1, 'a'), m('k', 3, 'c')], committed).join(),
        /k#3 arrived after k#1/,
      );
      assert.match(
        checkOrderedDelivery([m('k', 1, 'a'), m('k', 2, 'x'), m('k', 3, 'c')], committed).join(),
        /committed with b/,
      );
      assert.match(
        checkOrderedDelivery([m('k', 1, 'a'), m('k', 2, 'b')], committed).join(),
        /k#3 never applied/,
      );
    });

    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) {
      it(`seed ${seed}: 400 steps of early xids, late commits, rollbacks, tiny batches and relay crashes`, async () => {
        const result = await outboxNemesis(db.pool, { seed, steps: 400 });
        assert.ok(result.committed > 20, `the workload committed too little (${result.committed})`);
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only outbox --seed ${seed})`,
        );
      });
    }
  },
);
