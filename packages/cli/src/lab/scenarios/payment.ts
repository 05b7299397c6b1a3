import { IdempotencyInFlightError } from 'raceguard';
import {
  createIdempotencyTable,
  idempotentTransaction,
  PostgresIdempotencyStore,
  transaction,
  type PoolLike,
  type Queryable,
} from 'raceguard/postgres';
import { field, note, type HandlerResult, type Scenario } from '../scenario.js';

const AMOUNT = 10;
const START_BALANCE = 1_000_000;
/** Copies of each payment in the burst: a double click, and retries after a client timeout. */
const COPIES = 4;

const stores = new WeakMap<PoolLike, PostgresIdempotencyStore>();
function storeFor(pool: PoolLike): PostgresIdempotencyStore {
  let store = stores.get(pool);
  if (store === undefined) {
    store = new PostgresIdempotencyStore({ db: pool, table: 'payment_idempotency' });
    stores.set(pool, store);
  }
  return store;
}

/** Debit and record one charge: what every variant does once it decided to charge. */
async function charge(db: Queryable, request: Readonly<Record<string, unknown>>): Promise<number> {
  const { rows } = await db.query(
    'INSERT INTO payment_charges (customer, request_key, amount) VALUES ($1, $2, $3) RETURNING id',
    [field(request, 'customer'), field(request, 'key'), AMOUNT],
  );
  await db.query('UPDATE payment_accounts SET balance = balance - $2 WHERE customer = $1', [
    field(request, 'customer'),
    AMOUNT,
  ]);
  return Number(rows[0]?.id);
}

/**
 * A checkout whose client sends each payment several times: a double click,
 * and retries after its own timeout fired while the first attempt was still
 * running. Nothing in the database conflicts (every copy is a valid
 * payment on its own), so row locks and isolation levels cannot help; only
 * recognising the copies as one request can.
 */
export const payment: Scenario = {
  name: 'payment',
  title: 'payment retried by its client',
  invariant: 'each payment charged at most once; every success for one key reports the same charge',
  strategies: ['unsafe', 'atomic', 'idempotency-key'],
  async createSchema(db, strategy) {
    await db.query(`DROP TABLE IF EXISTS payment_charges, payment_accounts, payment_idempotency;
      CREATE TABLE payment_accounts (customer text PRIMARY KEY, balance bigint NOT NULL);
      CREATE TABLE payment_charges (id serial PRIMARY KEY, customer text NOT NULL, request_key text NOT NULL,
        amount bigint NOT NULL);`);
    // The atomic fix: the client's request id becomes a unique key of the charge.
    if (strategy === 'atomic') {
      await db.query('CREATE UNIQUE INDEX ON payment_charges (customer, request_key)');
    }
    if (strategy === 'idempotency-key') {
      await createIdempotencyTable(db, { table: 'payment_idempotency' });
    }
  },
  async seed(db, { concurrency }) {
    await db.query('TRUNCATE payment_charges, payment_accounts');
    await db.query('TRUNCATE payment_idempotency').catch(() => undefined);
    const customers = Math.max(1, Math.floor(concurrency / COPIES));
    await db.query(
      `INSERT INTO payment_accounts (customer, balance)
       SELECT 'customer-' || i, $2 FROM generate_series(0, $1 - 1) AS i`,
      [customers, START_BALANCE],
    );
  },
  requests: ({ concurrency }) => {
    const customers = Math.max(1, Math.floor(concurrency / COPIES));
    return Array.from({ length: concurrency }, (_, i) => ({
      customer: `customer-${i % customers}`,
      key: `order-${i % customers}`,
      amount: AMOUNT,
    }));
  },
  target: (request) => ({
    table: 'payment_accounts',
    key: { customer: field(request, 'customer') },
    lockKey: `payment:${field(request, 'customer')}`,
  }),
  async checkThenAct(db, _row, request, { gap }) {
    await gap();
    return { status: 200, body: { chargeId: await charge(db, request) } };
  },
  atomic(request, { pool, retryOptions }) {
    return transaction(
      pool,
      async (tx): Promise<HandlerResult> => {
        const { rows } = await tx.query(
          `INSERT INTO payment_charges (customer, request_key, amount) VALUES ($1, $2, $3)
           ON CONFLICT (customer, request_key) DO NOTHING RETURNING id`,
          [field(request, 'customer'), field(request, 'key'), AMOUNT],
        );
        if (rows[0] === undefined) {
          const existing = await tx.query(
            'SELECT id FROM payment_charges WHERE customer = $1 AND request_key = $2',
            [field(request, 'customer'), field(request, 'key')],
          );
          return { status: 200, body: { chargeId: Number(existing.rows[0]?.id) } };
        }
        await tx.query('UPDATE payment_accounts SET balance = balance - $2 WHERE customer = $1', [
          field(request, 'customer'),
          AMOUNT,
        ]);
        return { status: 200, body: { chargeId: Number(rows[0].id) } };
      },
      retryOptions,
    );
  },
  optimistic() {
    return Promise.reject(new Error('the payment scenario has no optimistic variant'));
  },
  async idempotent(request, { pool, gap, retryOptions }) {
    try {
      const { value } = await idempotentTransaction(
        pool,
        storeFor(pool),
        {
          scope: field(request, 'customer'),
          key: field(request, 'key'),
          payload: { amount: request.amount },
          transaction: retryOptions,
        },
        async (tx) => {
          await gap();
          return { chargeId: await charge(tx, request) };
        },
      );
      return { status: 200, body: value };
    } catch (error) {
      if (error instanceof IdempotencyInFlightError) {
        return { status: 409, body: { error: error.code } };
      }
      throw error;
    }
  },
  async check(db, responses) {
    const anomalies = {};
    const { rows } = await db.query(
      `SELECT c.request_key, count(*)::int AS charges, a.balance::bigint AS balance,
         (SELECT sum(amount) FROM payment_charges x WHERE x.customer = c.customer)::bigint AS debited
       FROM payment_charges c JOIN payment_accounts a USING (customer)
       GROUP BY c.customer, c.request_key, a.balance`,
    );
    for (const row of rows) {
      note(anomalies, 'charged-twice', Number(row.charges) - 1);
      note(
        anomalies,
        'balance-mismatch',
        Number(START_BALANCE - Number(row.debited) !== Number(row.balance)),
      );
    }
    const reported = new Map<string, Set<unknown>>();
    for (const r of responses) {
      if (r.status < 200 || r.status >= 300) continue;
      const key = field(r.request, 'key');
      const ids = reported.get(key) ?? new Set();
      ids.add((r.body as { chargeId?: unknown } | undefined)?.chargeId);
      reported.set(key, ids);
    }
    const charged = new Set(rows.map((row) => String(row.request_key)));
    for (const [key, ids] of reported) {
      note(anomalies, 'different-charges-reported', ids.size - 1);
      note(anomalies, 'success-without-charge', Number(!charged.has(key)));
    }
    return anomalies;
  },
};
