/**
 * A payment API in a process of its own, so the crash tests can SIGKILL it
 * mid-operation. `POST /orders` is one transaction (idempotentTransaction);
 * `POST /checkout` is three atomic phases (order, provider charge, email
 * outbox). `x-stall: <point>` makes the server report `stalled` over IPC at
 * that point and hang there until it is killed.
 */
import Fastify from 'fastify';
import pg from 'pg';
import { runPhases } from '../../packages/raceguard/src/postgres/atomic-phases.js';
import { checkoutOperation } from './checkout-operation.js';
import {
  idempotentTransaction,
  PostgresIdempotencyStore,
} from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { IdempotencyInFlightError } from '../../packages/raceguard/src/idempotency/errors.js';

const [url, schema] = process.argv.slice(2) as [string, string];
const LEASE_MS = 3000;

const pool = new pg.Pool({ connectionString: url, max: 10, options: `-c search_path=${schema}` });
pool.on('error', () => undefined);
const store = new PostgresIdempotencyStore({ client: pool });

const stallPoints = new Map<string, string>();
function maybeStall(key: string, point: string): Promise<void> {
  if (stallPoints.get(key) !== point) return Promise.resolve();
  process.send?.({ stalled: point });
  return new Promise(() => undefined); // until SIGKILL
}

interface Order {
  item: string;
}
const checkout = (key: string) => checkoutOperation(pool, key, maybeStall);

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
