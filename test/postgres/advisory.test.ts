import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  advisoryLockKey,
  advisoryXactLock,
  tryAdvisoryXactLock,
  withAdvisoryLock,
} from '../../packages/raceguard/src/postgres/advisory.js';
import { LockTimeoutError } from '../../packages/raceguard/src/postgres/errors.js';
import {
  transaction,
  type Transaction,
} from '../../packages/raceguard/src/postgres/transaction.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

/** Advisory locks are database-wide: keys unique to this run keep parallel test files and runs apart. */
const run = randomBytes(4).toString('hex');

describe('advisory locks', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(30);
    await db.pool.query('CREATE TABLE counters (id int primary key, value int not null)');
  });
  after(() => db.close());
  beforeEach(() => db.pool.query('TRUNCATE counters; INSERT INTO counters VALUES (1, 0)'));

  it('hashes keys to stable signed 64-bit integers', () => {
    assert.equal(advisoryLockKey('a'), advisoryLockKey('a'));
    assert.notEqual(advisoryLockKey('a'), advisoryLockKey('b'));
    const k = advisoryLockKey('inventory:42');
    assert.ok(k >= -(2n ** 63n) && k < 2n ** 63n);
    assert.throws(() => advisoryLockKey(''), InvalidArgumentError);
  });

  it('100 concurrent read-gap-write increments under the lock add exactly 100', async () => {
    await Promise.all(
      Array.from({ length: 100 }, () =>
        withAdvisoryLock(db.pool, `${run}:counter:1`, async (tx) => {
          const { rows } = await tx.query('SELECT value FROM counters WHERE id = 1');
          await delay(1);
          await tx.query('UPDATE counters SET value = $1 WHERE id = 1', [
            (rows[0]?.value as number) + 1,
          ]);
        }),
      ),
    );
    const { rows } = await db.pool.query('SELECT value FROM counters WHERE id = 1');
    assert.equal(rows[0].value, 100);
  });

  it('the try variant and the timeout see a held lock; release comes with COMMIT', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = withAdvisoryLock(db.pool, `${run}:report`, async () => {
      locked();
      await held;
    });
    await isLocked;
    try {
      assert.equal(
        await transaction(db.pool, (tx) => tryAdvisoryXactLock(tx, `${run}:report`)),
        false,
      );
      assert.equal(
        await transaction(db.pool, (tx) => tryAdvisoryXactLock(tx, `${run}:other`)),
        true,
      );
      const error = await transaction(db.pool, (tx) =>
        advisoryXactLock(tx, `${run}:report`, { lockTimeoutMs: 50 }),
      ).catch((e: unknown) => e);
      assert.ok(error instanceof LockTimeoutError);
      assert.match(error.message, /advisory lock "[0-9a-f]+:report" within 50ms/);
    } finally {
      release();
      await holder;
    }
    assert.equal(
      await transaction(db.pool, (tx) => tryAdvisoryXactLock(tx, `${run}:report`)),
      true,
    );
  });

  it('validates its input', async () => {
    await assert.rejects(
      transaction(db.pool, (tx) => advisoryXactLock(tx, '')),
      InvalidArgumentError,
    );
    await assert.rejects(advisoryXactLock(db.pool as unknown as Transaction, 'k'), /a Transaction/);
    await assert.rejects(
      withAdvisoryLock(db.pool, '', () => Promise.resolve()),
      InvalidArgumentError,
    );
  });
});
