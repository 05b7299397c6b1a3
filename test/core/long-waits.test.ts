/**
 * Waits that must honour their length and their signal (issue 27, defect
 * 11): delays beyond Node's 2^31-1 ms timer limit (which fires after 1 ms),
 * a transaction waiting for a connection of an exhausted pool (PostgreSQL
 * and MySQL), and expired MySQL idempotency records reaped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../../packages/raceguard/src/core/abort.js';
import { within } from '../../packages/raceguard/src/core/deadline.js';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { idempotent } from '../../packages/raceguard/src/idempotency/idempotent.js';
import { KeyedMutex } from '../../packages/raceguard/src/local/keyed-mutex.js';
import {
  MysqlIdempotencyStore,
  createMysqlIdempotencyTable,
} from '../../packages/raceguard/src/mysql/idempotency-store.js';
import { transaction as mysqlTransaction } from '../../packages/raceguard/src/mysql/transaction.js';
import { transaction } from '../../packages/raceguard/src/postgres/transaction.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';

const THREE_BILLION_MS = 3e9; // about 34.7 days: past the 24.8 days a Node timer takes

/** Which settles first: `promise`, or a timer of `ms`. */
const before50 = (promise: Promise<unknown>, ms = 50) =>
  Promise.race([
    promise.then(
      () => 'settled',
      () => 'settled',
    ),
    new Promise((resolve) => setTimeout(() => resolve('still waiting'), ms)),
  ]);

describe('long and blocked waits', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let my: TestMysql;
  before(async () => {
    [db, my] = await Promise.all([openTestDatabase(2), openTestMysql(2)]);
  });
  after(async () => {
    await Promise.all([db.close(), my.close()]);
  });

  it('regression: sleep, within and an in-process lock wait of 3e9 ms wait, and still end on their signal', async () => {
    const controller = new AbortController();
    const slept = sleep(THREE_BILLION_MS, controller.signal);
    assert.equal(await before50(slept), 'still waiting');
    const bounded = within(new Promise(() => undefined), {
      deadline: performance.now() + THREE_BILLION_MS,
      signal: controller.signal,
      timeout: () => new Error('timed out'),
    });
    assert.equal(await before50(bounded), 'still waiting');
    const locks = new KeyedMutex();
    const held = await locks.acquire('k');
    const waiting = locks.acquire('k', { waitMs: THREE_BILLION_MS, signal: controller.signal });
    assert.equal(await before50(waiting), 'still waiting');
    controller.abort(new Error('stop'));
    for (const p of [slept, bounded, waiting]) await assert.rejects(p, AbortedError);
    await held.release();
    // A lease is watched by a timer: one longer than a timer can take is refused, not cut short.
    const redisLocks = new RedisLock({
      client: { evalsha: () => Promise.resolve(), eval: () => Promise.resolve() },
    });
    await assert.rejects(
      redisLocks.acquire('k', { ttlMs: THREE_BILLION_MS }),
      InvalidArgumentError,
    );
  });

  it('regression: transaction() ends its wait for a pool connection on the signal (PostgreSQL and MySQL)', async () => {
    const pool = db.newPool(1);
    const hostage = await pool.connect();
    const controller = new AbortController();
    const waiting = transaction(pool, () => Promise.resolve(1), { signal: controller.signal });
    assert.equal(await before50(waiting), 'still waiting');
    controller.abort(new Error('gave up'));
    await assert.rejects(waiting, AbortedError);
    hostage.release();
    // The connection handed over after the abort went back: the pool still works.
    assert.equal(await transaction(pool, () => Promise.resolve(2)), 2);

    const mysqlPool = my.newPool(1);
    const taken = await mysqlPool.getConnection();
    const stop = new AbortController();
    const queued = mysqlTransaction(mysqlPool, () => Promise.resolve(1), { signal: stop.signal });
    assert.equal(await before50(queued), 'still waiting');
    stop.abort(new Error('gave up'));
    await assert.rejects(queued, AbortedError);
    taken.release();
    assert.equal(await mysqlTransaction(mysqlPool, () => Promise.resolve(2)), 2);
    await mysqlPool.end();
  });

  it('regression: the MySQL idempotency store reaps expired records only', async () => {
    await createMysqlIdempotencyTable(my.pool, { table: 'reap_idem' });
    const store = new MysqlIdempotencyStore({ client: my.pool, table: 'reap_idem' });
    await idempotent(store, { scope: 'reap', key: 'old', ttlMs: 100, leaseMs: 100 }, () => 1);
    await idempotent(store, { scope: 'reap', key: 'new' }, () => 1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(await store.reap({ batchSize: 1 }), 1);
    const [rows] = await my.pool.query("SELECT `key` FROM reap_idem WHERE scope = 'reap'");
    assert.deepEqual(rows, [{ key: 'new' }]);
    await assert.rejects(store.reap({ batchSize: 0 }), InvalidArgumentError);
  });
});
