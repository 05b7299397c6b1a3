/**
 * A payment API in a process of its own, so the crash tests can SIGKILL it
 * mid-operation. `POST /orders` is one transaction (idempotentTransaction);
 * `POST /checkout` is three atomic phases (order, provider charge, email
 * outbox). `x-stall: <point>` makes the server report `stalled` over IPC at
 * that point and hang there until it is killed.
 */
import Fastify from 'fastify';
import pg from 'pg';
import { runPhases, type PhasedOperation } from '../../src/postgres/atomic-phases.js';
import {
  idempotentTransaction,
  PostgresIdempotencyStore,
} from '../../src/postgres/idempotency-store.js';
import type { Transaction } from '../../src/postgres/transaction.js';
import { IdempotencyInFlightError } from '../../src/idempotency/errors.js';

const [url, schema] = process.argv.slice(2) as [string, string];
const LEASE_MS = 1500;

const pool = new pg.Pool({ connectionString: url, max: 10, options: `-c search_path=${schema}` });
pool.on('error', () => undefined);
const store = new PostgresIdempotencyStore({ db: pool });

const stallPoints = new Map<string, string>();
function maybeStall(key: string, point: string): Promise<void> {
  if (stallPoints.get(key) !== point) return Promise.resolve();
  process.send?.({ stalled: point });
  return new Promise(() => undefined); // until SIGKILL
}

interface Order {
  item: string;
}
interface CheckoutState {
  orderId?: number;
  chargeId?: number;
}

/** The "payment provider": deduplicates on the downstream key, counts every call. */
async function providerCharge(downstreamKey: string): Promise<number> {
  await pool.query('INSERT INTO provider_calls (downstream_key) VALUES ($1)', [downstreamKey]);
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO provider_charges (downstream_key) VALUES ($1)
     ON CONFLICT (downstream_key) DO UPDATE SET downstream_key = EXCLUDED.downstream_key RETURNING id`,
    [downstreamKey],
  );
  return (rows[0] as { id: number }).id;
}

export const checkout = (key: string): PhasedOperation<Order, CheckoutState, unknown> => ({
  name: 'checkout',
  initialState: {},
  phases: [
    {
      name: 'order-created',
      commit: async (tx: Transaction, { input }) => {
        const { rows } = await tx.query(
          'INSERT INTO orders (idem_key, item) VALUES ($1, $2) RETURNING id',
          [key, input.item],
        );
        return { orderId: Number(rows[0]?.id) };
      },
    },
    {
      name: 'charged',
      call: async ({ downstreamKey }) => {
        await maybeStall(key, 'before-charge');
        return providerCharge(downstreamKey);
      },
      commit: async (tx, { state, called }) => {
        await maybeStall(key, 'in-charge-commit');
        await tx.query('UPDATE orders SET charge_id = $1 WHERE id = $2', [called, state.orderId]);
        return { ...state, chargeId: called as number };
      },
    },
    {
      name: 'emailed',
      call: () => maybeStall(key, 'before-email'),
      commit: async (tx, { state }) => {
        await tx.query('INSERT INTO outbox (order_id) VALUES ($1)', [state.orderId]);
        return state;
      },
    },
  ],
  respond: (state) => ({ orderId: state.orderId, chargeId: state.chargeId }),
});

const app = Fastify();
app.post<{ Body: Order }>('/orders', async (request, reply) => {
  const key = String(request.headers['idempotency-key']);
  if (typeof request.headers['x-stall'] === 'string')
    stallPoints.set(key, request.headers['x-stall']);
  try {
    const { value, replayed } = await idempotentTransaction(
      pool,
      store,
      { scope: 'shop', key, payload: request.body, leaseMs: LEASE_MS },
      async (tx) => {
        const { rows } = await tx.query(
          'INSERT INTO orders (idem_key, item) VALUES ($1, $2) RETURNING id',
          [key, request.body.item],
        );
        await tx.query('UPDATE stock SET n = n - 1');
        await maybeStall(key, 'in-transaction');
        return { orderId: Number(rows[0]?.id) };
      },
    );
    return await reply.code(201).header('idempotent-replayed', String(replayed)).send(value);
  } catch (error) {
    if (error instanceof IdempotencyInFlightError)
      return reply.code(409).send({ error: 'in flight' });
    throw error;
  }
});
app.post<{ Body: Order }>('/checkout', async (request, reply) => {
  const key = String(request.headers['idempotency-key']);
  if (typeof request.headers['x-stall'] === 'string')
    stallPoints.set(key, request.headers['x-stall']);
  try {
    const { value, replayed } = await runPhases(pool, store, checkout(key), {
      scope: 'shop',
      key,
      input: request.body,
      leaseMs: LEASE_MS,
    });
    return await reply.code(201).header('idempotent-replayed', String(replayed)).send(value);
  } catch (error) {
    if (error instanceof IdempotencyInFlightError)
      return reply.code(409).send({ error: 'in flight' });
    throw error;
  }
});

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.send?.({ url: address });
