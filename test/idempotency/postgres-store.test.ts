import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { setTimeout as delay } from 'node:timers/promises';
import {
  IdempotencyClaimLostError,
  IdempotencyStoreError,
} from '../../packages/raceguard/src/idempotency/errors.js';
import {
  claimIdempotency,
  idempotent,
} from '../../packages/raceguard/src/idempotency/idempotent.js';
import {
  createIdempotencyTable,
  idempotentTransaction,
  PostgresIdempotencyStore,
} from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { storeContract } from './store-contract.js';

describe('PostgresIdempotencyStore', () => {
  let db: TestDatabase;
  let store: PostgresIdempotencyStore;

  before(async () => {
    db = await openTestDatabase(40);
    await createIdempotencyTable(db.pool);
    await createIdempotencyTable(db.pool); // idempotent migration
    store = new PostgresIdempotencyStore({ client: db.pool });
    await db.pool.query('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)');
  });
  after(() => db.close());

  storeContract(
    () => store,
    (extra) => new PostgresIdempotencyStore({ client: db.pool, ...extra }),
  );

  it('a takeover that waited on the row lock past the old lease still gets a full lease from its grant', async () => {
    const id = { scope: 'wait', key: 'row-lock', fingerprint: 'f', ttlMs: 60_000 };
    assert.equal((await store.claim({ ...id, owner: 'a', leaseMs: 500 })).kind, 'claimed');
    // Another transaction holds the record's row lock past A's lease (as a
    // handler's transaction does once it has run completeIn), then rolls back.
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        'SELECT 1 FROM raceguard_idempotency WHERE scope = $1 AND key = $2 FOR UPDATE',
        [id.scope, id.key],
      );
      const waiting = store.claim({ ...id, owner: 'b', leaseMs: 500 });
      await delay(800);
      await holder.query('ROLLBACK');
      assert.equal(
        (await waiting).kind,
        'claimed',
        "A's lease ran out while B waited: B takes over",
      );
    } finally {
      holder.release();
    }
    const third = await store.claim({ ...id, owner: 'c', leaseMs: 500 });
    assert.equal(third.kind, 'in-progress', 'B holds a fresh lease: nobody else may take over yet');
  });

  it('idempotentTransaction: 100 concurrent duplicates debit once; effect and record commit together', async () => {
    await db.pool.query('INSERT INTO accounts VALUES (1, 1000)');
    const outcomes = await Promise.allSettled(
      Array.from({ length: 100 }, () =>
        idempotentTransaction(
          db.pool,
          store,
          { scope: 'acct-1', key: 'pay-1', payload: { amount: 100 } },
          async (tx) => {
            const { rows } = await tx.query(
              'UPDATE accounts SET balance = balance - 100 WHERE id = 1 RETURNING balance',
            );
            return { balance: Number(rows[0]?.balance) };
          },
        ),
      ),
    );
    const { rows } = await db.pool.query('SELECT balance FROM accounts WHERE id = 1');
    assert.equal(rows[0].balance, 900);
    assert.ok(outcomes.some((o) => o.status === 'fulfilled' && !o.value.replayed));
    const replay = await idempotentTransaction(
      db.pool,
      store,
      { scope: 'acct-1', key: 'pay-1', payload: { amount: 100 } },
      () => {
        throw new Error('must not run');
      },
    );
    assert.deepEqual(replay, { value: { balance: 900 }, replayed: true });
  });

  it('idempotentTransaction: a handler that fails rolls back and frees the key', async () => {
    await db.pool.query('INSERT INTO accounts VALUES (2, 50)');
    await assert.rejects(
      idempotentTransaction(db.pool, store, { scope: 'acct-2', key: 'k' }, async (tx) => {
        await tx.query('UPDATE accounts SET balance = balance - 100 WHERE id = 2');
        throw new Error('insufficient funds');
      }),
      /insufficient funds/,
    );
    const { rows } = await db.pool.query('SELECT balance FROM accounts WHERE id = 2');
    assert.equal(rows[0].balance, 50);
    const retry = await idempotentTransaction(db.pool, store, { scope: 'acct-2', key: 'k' }, () =>
      Promise.resolve('second try'),
    );
    assert.equal(retry.value, 'second try');
  });

  it('idempotentTransaction: an owner that lost its claim rolls its effects back', async () => {
    await db.pool.query('INSERT INTO accounts VALUES (3, 500)');
    const options = { scope: 'acct-3', key: 'k', leaseMs: 200 };
    const slow = idempotentTransaction(db.pool, store, options, async (tx) => {
      await tx.query('UPDATE accounts SET balance = balance - 100 WHERE id = 3');
      // Stall past the lease with renewals blocked: another request takes over.
      await db.pool.query(
        "UPDATE raceguard_idempotency SET lease_until = now() - interval '1 s' WHERE scope = 'acct-3'",
      );
      const other = await claimIdempotency<string>(store, options);
      assert.equal(other.kind, 'execute');
      if (other.kind === 'execute') await other.complete('taken over');
      return 'late';
    });
    await assert.rejects(slow, IdempotencyClaimLostError);
    const { rows } = await db.pool.query('SELECT balance FROM accounts WHERE id = 3');
    assert.equal(rows[0].balance, 500);
  });

  it('reap() deletes expired records only', async () => {
    await idempotent(store, { scope: 'reap', key: 'old', ttlMs: 100, leaseMs: 100 }, () => 1);
    await idempotent(store, { scope: 'reap', key: 'new' }, () => 1);
    await delay(150);
    assert.ok((await store.reap({ batchSize: 1 })) >= 1);
    const { rows } = await db.pool.query(
      "SELECT key FROM raceguard_idempotency WHERE scope = 'reap'",
    );
    assert.deepEqual(
      rows.map((r: { key: string }) => r.key),
      ['new'],
    );
  });

  it('a database that is down fails closed with the cause attached', async () => {
    const dead = new pg.Pool({ host: '127.0.0.1', port: 1, max: 1 });
    dead.on('error', () => undefined);
    const deadStore = new PostgresIdempotencyStore({ client: dead });
    let runs = 0;
    const error = await idempotent(deadStore, { scope: 's', key: 'k' }, () => (runs += 1)).catch(
      (e: unknown) => e,
    );
    assert.ok(error instanceof IdempotencyStoreError);
    assert.ok(error.cause instanceof Error);
    assert.equal(runs, 0);
    await dead.end();
  });
});
