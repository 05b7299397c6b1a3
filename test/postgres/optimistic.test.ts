import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  OptimisticConflictError,
  PoolClosedError,
  RowNotFoundError,
  UnknownIdentifierError,
} from '../../packages/raceguard/src/postgres/errors.js';
import {
  compareAndSet,
  optimisticUpdate,
} from '../../packages/raceguard/src/postgres/optimistic.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('optimistic locking', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(30);
    await db.pool.query(
      'CREATE TABLE "Loans" (id int primary key, status text not null, decided_by text, rev bigint not null default 0)',
    );
  });
  after(() => db.close());
  beforeEach(() =>
    db.pool.query(
      `TRUNCATE "Loans"; INSERT INTO "Loans" (id, status) VALUES (1, 'pending'), (2, 'pending')`,
    ),
  );

  it('100 concurrent read-compute-write updates lose nothing', async () => {
    await db.pool.query('ALTER TABLE "Loans" ADD COLUMN IF NOT EXISTS n int NOT NULL DEFAULT 0');
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        optimisticUpdate(db.pool, {
          table: 'Loans',
          key: { id: 1 },
          versionColumn: 'rev',
          maxAttempts: 1000,
          maxDelayMs: 20,
          update: async (row) => {
            await delay(1); // widen the read-write window
            return { n: (row.n as number) + 1 };
          },
        }),
      ),
    );
    const { rows } = await db.pool.query('SELECT n, rev FROM "Loans" WHERE id = 1');
    assert.equal(rows[0].n, 100);
    assert.equal(Number(rows[0].rev), 100);
    assert.ok(
      results.some((r) => r.attempts > 1),
      'the window should have produced lost races',
    );
  });

  it('two officers deciding at once: exactly one wins, the other sees the decision', async () => {
    const decide = (officer: string, status: string) =>
      optimisticUpdate(db.pool, {
        table: 'Loans',
        key: { id: 2 },
        versionColumn: 'rev',
        update: async (row) => {
          await delay(5);
          return row.status === 'pending' ? { status, decided_by: officer } : null;
        },
      });
    const [a, b] = await Promise.all([decide('ann', 'approved'), decide('bo', 'rejected')]);
    const winner = a.applied ? a : b;
    const loser = a.applied ? b : a;
    assert.equal(winner.applied, true);
    assert.equal(loser.applied, false);
    assert.equal(loser.row.status, winner.row.status);
    const { rows } = await db.pool.query('SELECT status FROM "Loans" WHERE id = 2');
    assert.equal(rows[0].status, winner.row.status);
  });

  it('throws OptimisticConflictError with the current row when attempts run out', async () => {
    const error = await optimisticUpdate(db.pool, {
      table: 'Loans',
      key: { id: 1 },
      versionColumn: 'rev',
      maxAttempts: 2,
      update: async (row) => {
        // Someone else writes between our read and our write, every time.
        await db.pool.query('UPDATE "Loans" SET rev = rev + 1, decided_by = $1 WHERE id = 1', [
          'intruder',
        ]);
        return { status: row.status === 'pending' ? 'approved' : 'pending' };
      },
    }).catch((e: unknown) => e);
    assert.ok(error instanceof OptimisticConflictError);
    assert.equal(error.attempts, 2);
    assert.equal(error.current?.decided_by, 'intruder');
    assert.equal(Number(error.current?.rev), 2);
  });

  it('compareAndSet applies only on the expected version', async () => {
    const first = await compareAndSet(db.pool, {
      table: 'Loans',
      key: { id: 1 },
      versionColumn: 'rev',
      expectedVersion: 0,
      set: { status: 'approved' },
    });
    const second = await compareAndSet(db.pool, {
      table: 'Loans',
      key: { id: 1 },
      versionColumn: 'rev',
      expectedVersion: 0,
      set: { status: 'rejected' },
    });
    assert.equal(first.applied, true);
    assert.equal(Number(first.row?.rev), 1);
    assert.equal(second.applied, false);
  });

  it('bad input gets a typed error and writes nothing', async () => {
    const update = () => ({ status: 'x' });
    await assert.rejects(
      optimisticUpdate(db.pool, { table: 'nope', key: { id: 1 }, update }),
      UnknownIdentifierError,
    );
    await assert.rejects(
      optimisticUpdate(db.pool, {
        table: 'Loans',
        key: { id: 1 },
        versionColumn: 'rev',
        update: () => ({ bogus: 1 }),
      }),
      UnknownIdentifierError,
    );
    await assert.rejects(
      optimisticUpdate(db.pool, { table: 'Loans', key: {}, update }),
      InvalidArgumentError,
    );
    await assert.rejects(
      optimisticUpdate(db.pool, { table: 'Loans', key: { id: Number.NaN }, update }),
      /finite number/,
    );
    await assert.rejects(
      optimisticUpdate(db.pool, { table: 'Loans', key: { id: 99 }, versionColumn: 'rev', update }),
      RowNotFoundError,
    );
    await assert.rejects(
      compareAndSet(db.pool, {
        table: 'Loans',
        key: { id: 1 },
        expectedVersion: 1.5,
        set: { status: 'x' },
      }),
      InvalidArgumentError,
    );
    const closed = db.newPool(1);
    await closed.end();
    await assert.rejects(
      optimisticUpdate(closed, { table: 'Loans', key: { id: 1 }, update }),
      PoolClosedError,
    );
    const { rows } = await db.pool.query('SELECT status, rev FROM "Loans" ORDER BY id');
    assert.deepEqual(
      rows.map((r) => [r.status, Number(r.rev)]),
      [
        ['pending', 0],
        ['pending', 0],
      ],
    );
  });
});
