import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { LockAcquireTimeoutError, LockLostError } from '../../packages/raceguard/src/core/lock.js';
import { advisoryLockKey } from '../../packages/raceguard/src/postgres/advisory.js';
import { PostgresAdvisoryLock } from '../../packages/raceguard/src/postgres/advisory-lock.js';
import { createLockTables } from '../../packages/raceguard/src/postgres/lease-lock.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { contend, increasing } from '../helpers/contend.js';

/** Advisory locks are database-wide: keys unique to this run keep parallel test files and runs apart. */
const run = randomBytes(4).toString('hex');

describe('PostgresAdvisoryLock (session advisory locks behind the lock API)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(20);
    await createLockTables(db.pool);
  });
  after(() => db.close());

  it('serializes 20 concurrent read-gap-write sections; tokens increase in grant order', async () => {
    const locks = new PostgresAdvisoryLock({ client: db.newPool(22) });
    const { peak, value, tokens } = await contend(locks, `${run}:report`, 20);
    assert.deepEqual({ peak, value }, { peak: 1, value: 20 });
    assert.ok(increasing(tokens));
  });

  it('try, timeout and abort; a killed session loses its lock and says so', async () => {
    const pool = db.newPool(6);
    const locks = new PostgresAdvisoryLock({ client: pool });
    const lost: LockLostError[] = [];
    const holder = await locks.acquire(`${run}:k`, { onLost: (e) => lost.push(e) });
    assert.equal(await locks.tryAcquire(`${run}:k`), undefined);
    const started = performance.now();
    await assert.rejects(locks.acquire(`${run}:k`, { waitMs: 100 }), LockAcquireTimeoutError);
    assert.ok(performance.now() - started >= 90);
    const controller = new AbortController();
    const waiting = locks.acquire(`${run}:k`, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('bye')), 100);
    await assert.rejects(waiting, AbortedError);

    // Kill the holder's session from outside, as a crashed app server would be
    // (found by its lock: pg_locks splits the 64-bit key into classid and objid).
    const key = BigInt.asUintN(64, advisoryLockKey(`${run}:k`));
    const { rowCount } = await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1`,
      [String(key >> 32n), String(key & 0xffffffffn)],
    );
    assert.equal(rowCount, 1);
    const next = await locks.acquire(`${run}:k`, { waitMs: 5000 });
    for (let i = 0; i < 20 && !holder.signal.aborted; i++) await delay(50);
    assert.equal(holder.signal.aborted, true);
    assert.equal(lost[0]?.reason, 'backend');
    assert.ok(next.token > holder.token);
    await holder.release();
    await next.release();
  });

  it('rejects bad input', async () => {
    assert.throws(() => new PostgresAdvisoryLock({ client: {} as never }), /a pg Pool/);
    await assert.rejects(
      new PostgresAdvisoryLock({ client: db.pool }).acquire(''),
      InvalidArgumentError,
    );
  });
});
