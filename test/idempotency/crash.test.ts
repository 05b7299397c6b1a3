/**
 * Crash tests on a real process: the payment server is SIGKILLed after it
 * claimed a key and before it completed (inside the handler's transaction,
 * and between atomic phases). Retries against a fresh server, and the
 * completer, must then finish each operation exactly once, with no phase
 * run twice and the payment provider charged once.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { resumeAbandoned } from '../../packages/raceguard/src/postgres/atomic-phases.js';
import {
  createIdempotencyTable,
  PostgresIdempotencyStore,
} from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { checkoutOperation } from '../helpers/checkout-operation.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

const LEASE_MS = 3000;

interface Server {
  readonly child: ChildProcess;
  readonly url: string;
}

describe('idempotency under SIGKILL', () => {
  let db: TestDatabase;

  async function startServer(): Promise<Server> {
    const child = fork('test/helpers/checkout-server.ts', [db.url, db.schema], {
      execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
    });
    const [message] = (await once(child, 'message')) as [{ url: string }];
    return { child, url: message.url };
  }

  async function kill(server: Server): Promise<void> {
    const exited = once(server.child, 'exit');
    server.child.kill('SIGKILL');
    await exited;
  }

  function send(server: Server, path: string, key: string, stall?: string) {
    return request(`${server.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': key,
        ...(stall !== undefined && { 'x-stall': stall }),
      },
      body: JSON.stringify({ item: 'book' }),
    });
  }

  /** Start a request that stalls at `point`, then SIGKILL the server there. */
  async function crashAt(path: string, key: string, point: string): Promise<void> {
    const server = await startServer();
    const stalled = once(server.child, 'message');
    const pending = send(server, path, key, point).catch(() => undefined);
    const [message] = (await stalled) as [{ stalled: string }];
    assert.equal(message.stalled, point);
    await kill(server);
    await pending;
  }

  async function count(sql: string, key: string): Promise<number> {
    const { rows } = await db.pool.query(sql, [key]);
    return Number(rows[0].n);
  }

  before(async () => {
    db = await openTestDatabase(10);
    await createIdempotencyTable(db.pool);
    await db.pool.query(`
      CREATE TABLE orders (id serial PRIMARY KEY, idem_key text NOT NULL, item text NOT NULL, charge_id int);
      CREATE TABLE stock (n int NOT NULL); INSERT INTO stock VALUES (100);
      CREATE TABLE provider_calls (downstream_key text NOT NULL);
      CREATE TABLE provider_charges (id serial PRIMARY KEY, downstream_key text UNIQUE NOT NULL);
      CREATE TABLE outbox (order_id int NOT NULL);
    `);
  });
  after(() => db.close());

  it('killed inside the handler transaction: the key is held for its lease, then the retry runs exactly once', async () => {
    const key = randomUUID();
    // The retrying server is up before the crash, so the retry surely comes within the lease.
    const server = await startServer();
    await crashAt('/orders', key, 'in-transaction');
    try {
      const early = await send(server, '/orders', key);
      assert.equal(early.statusCode, 409, 'the dead claim must hold until its lease runs out');
      await early.body.dump();
      await delay(LEASE_MS + 200);
      const retry = await send(server, '/orders', key);
      assert.equal(retry.statusCode, 201);
      const first = (await retry.body.json()) as { orderId: number };
      const replay = await send(server, '/orders', key);
      assert.equal(replay.headers['idempotent-replayed'], 'true');
      assert.deepEqual(await replay.body.json(), first);
      assert.equal(await count('SELECT count(*) AS n FROM orders WHERE idem_key = $1', key), 1);
      const { rows } = await db.pool.query('SELECT n FROM stock');
      assert.equal(rows[0].n, 99);
    } finally {
      await kill(server);
    }
  });

  for (const point of ['before-charge', 'in-charge-commit', 'before-email']) {
    it(`killed between atomic phases (${point}): the retry resumes; no phase runs twice; one charge`, async () => {
      const key = randomUUID();
      await crashAt('/checkout', key, point);
      const server = await startServer();
      try {
        await delay(LEASE_MS + 200);
        const retry = await send(server, '/checkout', key);
        assert.equal(retry.statusCode, 201);
        const body = (await retry.body.json()) as { orderId: number; chargeId: number };
        assert.equal(await count('SELECT count(*) AS n FROM orders WHERE idem_key = $1', key), 1);
        assert.equal(
          await count(
            'SELECT count(*) AS n FROM outbox o JOIN orders r ON r.id = o.order_id WHERE r.idem_key = $1',
            key,
          ),
          1,
        );
        const charges = await db.pool.query('SELECT id FROM provider_charges WHERE id = $1', [
          body.chargeId,
        ]);
        assert.equal(charges.rowCount, 1);
        const { rows } = await db.pool.query('SELECT charge_id FROM orders WHERE idem_key = $1', [
          key,
        ]);
        assert.equal(rows[0].charge_id, body.chargeId);
        // The provider is called again only if the crash came after the call and before its phase committed.
        const calls = await db.pool.query(
          'SELECT count(*) AS n FROM provider_calls c JOIN provider_charges p USING (downstream_key) WHERE p.id = $1',
          [body.chargeId],
        );
        assert.equal(Number(calls.rows[0].n), point === 'in-charge-commit' ? 2 : 1);
      } finally {
        await kill(server);
      }
    });
  }

  it('the completer finishes an abandoned operation; the client retry then gets the stored result', async () => {
    const key = randomUUID();
    await crashAt('/checkout', key, 'before-email');
    const store = new PostgresIdempotencyStore({ client: db.pool });
    const early = await resumeAbandoned(db.pool, store, [checkoutOperation(db.pool, key)]);
    assert.equal(early.completed, 0, 'a live lease must not be resumed');
    await delay(LEASE_MS + 200);
    const report = await resumeAbandoned(db.pool, store, [checkoutOperation(db.pool, key)]);
    assert.deepEqual(
      { completed: report.completed, failed: report.failed.length },
      { completed: 1, failed: 0 },
    );
    assert.equal(
      await count(
        'SELECT count(*) AS n FROM outbox o JOIN orders r ON r.id = o.order_id WHERE r.idem_key = $1',
        key,
      ),
      1,
    );
    const server = await startServer();
    try {
      const retry = await send(server, '/checkout', key);
      assert.equal(retry.statusCode, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      await retry.body.dump();
      assert.equal(await count('SELECT count(*) AS n FROM orders WHERE idem_key = $1', key), 1);
    } finally {
      await kill(server);
    }
  });
});
