/**
 * The hot-row combiner under its adversary (test/nemesis/combiner-nemesis.ts):
 * fixed seeds here, `npm run nemesis -- --only combiner` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { check, combinerNemesis } from './combiner-nemesis.js';

describe(
  'nemesis: combiner (one-by-one accounting under aborts, deadlines and killed connections)',
  { timeout: 120_000 },
  () => {
    let db: TestDatabase;
    before(async () => {
      db = await openTestDatabase(4);
    });
    after(() => db.close());

    for (const seed of [1, 2]) {
      it(`seed ${seed}: 24 callers, 3 combiners, 3 rows, 3 s of connection kills`, async () => {
        const result = await combinerNemesis(db, { seed, durationMs: 3000, table: `comb_${seed}` });
        assert.ok(result.granted >= 100, `too few grants (${result.granted})`);
        assert.ok(result.kills >= 2, `too few kills (${result.kills})`);
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only combiner --seed ${seed})`,
        );
      });
    }

    it('control: the checker catches a wrong grant, an order for a cancelled request, and lost units', () => {
      const batch = { id: 1, size: 2, position: 0 };
      const initial = new Map([[0, 10]]);
      const honest = [
        {
          kind: 'reported',
          request: 'a',
          key: 0,
          amount: 4,
          batch: '0/1',
          result: { applied: true, value: 6, batch },
        },
        {
          kind: 'reported',
          request: 'b',
          key: 0,
          amount: 9,
          batch: '0/1',
          result: { applied: false, reason: 'limit', current: 6, batch: { ...batch, position: 1 } },
        },
        { kind: 'unknown', request: 'c', key: 0, amount: 2 },
        { kind: 'cancelled', request: 'd', key: 0, amount: 1 },
      ] as const;
      assert.deepEqual(
        check(
          honest,
          initial,
          new Map([[0, 4]]),
          new Map([
            ['a', 0],
            ['c', 0],
          ]),
        ),
        [],
      );
      // b granted where one by one refuses it (stock would go below the floor).
      const wrong = honest.map((o) =>
        o.request === 'b'
          ? { ...o, result: { applied: true, value: -3, batch: { ...batch, position: 1 } } }
          : o,
      ) as never;
      assert.notDeepEqual(
        check(
          wrong,
          initial,
          new Map([[0, -3]]),
          new Map([
            ['a', 0],
            ['b', 0],
            ['c', 0],
          ]),
        ),
        [],
      );
      assert.notDeepEqual(
        check(
          honest,
          initial,
          new Map([[0, 3]]),
          new Map([
            ['a', 0],
            ['c', 0],
            ['d', 0],
          ]),
        ),
        [],
      );
      assert.notDeepEqual(
        check(
          honest,
          initial,
          new Map([[0, 3]]),
          new Map([
            ['a', 0],
            ['c', 0],
          ]),
        ),
        [],
      );
    });
  },
);
