/**
 * Fenced writes under their adversary (test/nemesis/fencing-nemesis.ts):
 * fixed seeds here on PostgreSQL and Redis, `npm run nemesis -- --only
 * fencing` runs fresh ones. The control is a resource that compares tokens
 * as text, the break this adversary exists to catch.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import {
  fencingNemesis,
  postgresFencingTarget,
  redisFencingTarget,
  createFencingTable,
} from './fencing-nemesis.js';

describe(
  'nemesis: fenced writes (a write lands iff its token is the newest)',
  { timeout: 120_000 },
  () => {
    let db: TestDatabase;
    let redis: TestRedis;
    before(async () => {
      [db, redis] = await Promise.all([openTestDatabase(6), openTestRedis()]);
    });
    after(async () => {
      await Promise.all([db.close(), redis.close()]);
    });

    for (const seed of [1, 2, 3]) {
      it(`seed ${seed}: 300 rounds of 1–3 concurrent writers on PostgreSQL and Redis`, async () => {
        await createFencingTable(db.pool, `fenced_${seed}`, 4);
        for (const target of [
          postgresFencingTarget(db.pool, `fenced_${seed}`),
          redisFencingTarget(redis, `${redis.prefix}s${seed}:`),
        ]) {
          const result = await fencingNemesis(target, { seed, rounds: 300 });
          assert.ok(result.writes >= 300);
          assert.deepEqual(
            result.violations,
            [],
            `${target.name} seed ${seed} (replay: npm run nemesis -- --only fencing --seed ${seed})`,
          );
        }
      });
    }

    it('control: a resource that compares tokens as text is caught', async () => {
      const fences = new Map<number, string>();
      const result = await fencingNemesis(
        {
          name: 'text-compare',
          max: 2n ** 63n - 1n,
          async write(resource, token) {
            const current = fences.get(resource);
            if (current !== undefined && current > token.toString()) return false;
            fences.set(resource, token.toString());
            return true;
          },
          async fence(resource) {
            const token = fences.get(resource);
            return token === undefined ? undefined : BigInt(token);
          },
        },
        { seed: 1, rounds: 300 },
      );
      assert.notDeepEqual(result.violations, []);
    });
  },
);
