import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockNotOwnerError,
  StaleTokenError,
  withLock,
} from '../../packages/raceguard/src/core/lock.js';
import { fencedUpdate } from '../../packages/raceguard/src/postgres/fenced-update.js';
import {
  createLockTables,
  PostgresLeaseLock,
} from '../../packages/raceguard/src/postgres/lease-lock.js';
import { ReleaseNotifications } from '../../packages/raceguard/src/postgres/release-notifications.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('PostgresLeaseLock', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(20);
    await createLockTables(db.pool);
    await createLockTables(db.pool); // idempotent
    await db.pool
      .query(`CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, fence_token bigint);
      INSERT INTO accounts VALUES (1, 0, NULL)`);
  });
  after(() => db.close());

  /** A dedicated connection for LISTEN, as an application would open one. */
  async function connectListener(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  it('two "processes" (separate pools) doing 100 read-gap-write updates under the lock lose nothing; tokens increase', async () => {
    const a = new PostgresLeaseLock({ client: db.newPool(10), pollMs: 5 });
    const b = new PostgresLeaseLock({ client: db.newPool(10), pollMs: 5 });
    const tokens: bigint[] = [];
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        withLock(
          i % 2 === 0 ? a : b,
          'account:1',
          async (lock) => {
            tokens.push(lock.token);
            const { rows } = await db.pool.query('SELECT balance FROM accounts WHERE id = 1');
            await delay(1);
            await db.pool.query('UPDATE accounts SET balance = $1 WHERE id = 1', [
              rows[0].balance + 1,
            ]);
          },
          { ttlMs: 5000, waitMs: 60_000 },
        ),
      ),
    );
    const { rows } = await db.pool.query('SELECT balance FROM accounts WHERE id = 1');
    assert.equal(rows[0].balance, 100);
    assert.ok(tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as bigint)));
    const { rows: held } = await db.pool.query(
      'SELECT count(*)::int AS n FROM raceguard_locks WHERE expires_at > clock_timestamp()',
    );
    assert.equal(held[0].n, 0, 'released grants hold nothing');
    assert.equal(await a.reap(), 0, 'a key freed just now is not reaped by default');
    await delay(20);
    assert.equal(await a.reap({ olderThanMs: 10 }), 1, 'the free row of account:1 is reaped');
    const { rows: left } = await db.pool.query('SELECT count(*)::int AS n FROM raceguard_locks');
    assert.equal(left[0].n, 0);
    await assert.rejects(a.reap({ olderThanMs: 0 }), InvalidArgumentError);
  });

  it('tokens follow grant order even when grants and releases race (200 grants, 20 tryAcquire loops over 2 pools)', async () => {
    const lockers = [
      new PostgresLeaseLock({ client: db.newPool(10) }),
      new PostgresLeaseLock({ client: db.newPool(10) }),
    ];
    // A statement that drew its token before another grant, and inserted after that grant's release, would hand out a smaller token later.
    const grants: bigint[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const locks = lockers[i % 2] as PostgresLeaseLock;
        while (grants.length < 200) {
          const lock = await locks.tryAcquire('race:tokens', { ttlMs: 5000 });
          if (lock === undefined) continue;
          grants.push(lock.token);
          await lock.release();
        }
      }),
    );
    const outOfOrder = grants.filter((t, i) => i > 0 && t <= (grants[i - 1] as bigint));
    assert.deepEqual(outOfOrder, [], `tokens out of grant order: ${grants.join(' ')}`);
  });

  it('a crashed holder (never releases) frees the key when its lease runs out; its late write is fenced off', async () => {
    const crashed = new PostgresLeaseLock({ client: db.newPool(2) });
    const stale = await crashed.acquire('account:1', { ttlMs: 100 });
    const locks = new PostgresLeaseLock({ client: db.pool, pollMs: 10 });
    assert.equal(await locks.tryAcquire('account:1'), undefined);
    const fresh = await locks.acquire('account:1', { ttlMs: 5000, waitMs: 2000 });
    assert.ok(fresh.token > stale.token);
    assert.equal(stale.signal.aborted, true);
    await fencedUpdate(db.pool, {
      table: 'accounts',
      key: { id: 1 },
      set: { balance: 7 },
      token: fresh.token,
    });
    await assert.rejects(
      fencedUpdate(db.pool, {
        table: 'accounts',
        key: { id: 1 },
        set: { balance: -1 },
        token: stale.token,
      }),
      StaleTokenError,
    );
    await assert.rejects(stale.extend(), LockNotOwnerError);
    await stale.release(); // owner-checked: must not free `fresh`
    assert.equal(await locks.tryAcquire('account:1'), undefined);
    await fresh.release();
  });

  it('extends, auto-extends past the ttl, times out and aborts waiters', async () => {
    const locks = new PostgresLeaseLock({ client: db.pool, pollMs: 10 });
    const held = await locks.acquire('job', { ttlMs: 600, autoExtend: true });
    await delay(900);
    assert.equal(held.signal.aborted, false);
    await assert.rejects(locks.acquire('job', { waitMs: 50 }), LockAcquireTimeoutError);
    const controller = new AbortController();
    const waiting = locks.acquire('job', { signal: controller.signal });
    controller.abort(new Error('bye'));
    await assert.rejects(waiting, AbortedError);
    await held.extend(1000);
    await held.release();
    const next = await locks.tryAcquire('job');
    assert.ok(next);
    await next.release();
  });

  it('with LISTEN connections, a waiter in another "process" takes a released key at once; without, at its next poll', async () => {
    const listeners = await Promise.all([connectListener(), connectListener()]);
    try {
      const [holderListener, waiterListener] = listeners;
      const holder = new PostgresLeaseLock({ client: db.newPool(2), listener: holderListener });
      const waiter = new PostgresLeaseLock({
        client: db.newPool(2),
        pollMs: 5000,
        listener: waiterListener,
      });
      const poller = new PostgresLeaseLock({ client: db.newPool(2), pollMs: 1000 });
      // The listener wakes at the release (100 ms); the poller at its next poll (1000 ms).
      for (const [who, locks, waitMs, fastest, slowest] of [
        ['listening waiter', waiter, 1500, 0, 900],
        ['polling waiter', poller, 3000, 950, 2500],
      ] as const) {
        // Warm connections: the waiter's first attempt must come while the key is held.
        await (await locks.tryAcquire('warm-up'))?.release();
        const held = await holder.acquire('wake-up', { ttlMs: 20_000 });
        const started = performance.now();
        const waiting = locks.acquire('wake-up', { waitMs });
        await delay(100);
        await held.release();
        const next = await waiting;
        const waited = performance.now() - started;
        assert.ok(waited >= fastest && waited < slowest, `${who} got the key after ${waited} ms`);
        assert.ok(next.token > held.token);
        await next.release();
      }
    } finally {
      await Promise.all(listeners.map((c) => c.end()));
    }
  });

  it('with a listener, each release wakes one waiter of a process, the longest-waiting, and the key passes on at once', async () => {
    const listener = await connectListener();
    try {
      const locks = new PostgresLeaseLock({ client: db.newPool(6), pollMs: 5000, listener });
      const first = await locks.acquire('queue', { ttlMs: 20_000 });
      const order: number[] = [];
      const started = performance.now();
      const waiters = [0, 1, 2].map(async (i) => {
        await delay(60 * i);
        const lock = await locks.acquire('queue', { ttlMs: 20_000, waitMs: 4000 });
        order.push(i);
        await delay(20);
        await lock.release();
      });
      await delay(300);
      await first.release();
      await Promise.all(waiters);
      const took = performance.now() - started;
      assert.deepEqual(order, [0, 1, 2], 'woken in the order they began to wait');
      assert.ok(took < 2000, `three hand-offs took ${took} ms with a 5 s poll`);
    } finally {
      await listener.end();
    }
  });

  it('a notification wakes the longest-waiting watcher only; a watcher that gives up passes it on', async () => {
    const listener = await connectListener();
    try {
      const channel = ReleaseNotifications.channelOf('wake_queue_test');
      const notifications = new ReleaseNotifications(listener, channel);
      assert.equal(await notifications.listen(), true);
      const payload = ReleaseNotifications.payloadOf('k');
      const [first, second, other] = [
        notifications.watch(payload),
        notifications.watch(payload),
        notifications.watch(ReleaseNotifications.payloadOf('another key')),
      ];
      const started = performance.now();
      await db.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
      await first.sleep(5000, undefined);
      assert.ok(performance.now() - started < 1000, 'woken by the notification');
      assert.deepEqual([first.woken, second.woken, other.woken], [true, false, false]);
      notifications.passOn(payload);
      assert.deepEqual([second.woken, other.woken], [true, false]);
      for (const watch of [first, second, other]) watch.stop();
    } finally {
      await listener.end();
    }
  });

  it('reports a missing table or a closed pool as LockBackendError, and bad input before any SQL', async () => {
    const missing = new PostgresLeaseLock({ client: db.pool, table: 'no_such_locks' });
    const error = await missing.acquire('k').catch((e: unknown) => e);
    assert.ok(error instanceof LockBackendError);
    assert.match(
      error.message,
      /the lock table "no_such_locks" \(or its token sequence\) does not exist; create it once, e.g. in a migration, with createLockTables\(pool, \{ table: "no_such_locks" \}\)/,
    );
    const closedPool = db.newPool(1);
    const closed = new PostgresLeaseLock({ client: closedPool });
    await closedPool.end();
    await assert.rejects(closed.acquire('k'), LockBackendError);
    const locks = new PostgresLeaseLock({ client: db.pool });
    await assert.rejects(locks.acquire(''), InvalidArgumentError);
    await assert.rejects(locks.acquire('k', { ttlMs: 1.5 }), /ttlMs/);
    assert.throws(
      () => new PostgresLeaseLock({ client: db.pool, table: '' }),
      InvalidArgumentError,
    );
    assert.throws(
      () => new PostgresLeaseLock({ client: db.pool, listener: {} as never }),
      /options\.listener/,
    );
  });
});
