import { idempotent, IdempotencyInFlightError, type IdempotencyStore } from 'raceguard';
import { createMysqlIdempotencyTable, MysqlIdempotencyStore } from 'raceguard/mysql';
import {
  createIdempotencyTable,
  idempotentTransaction,
  PostgresIdempotencyStore,
} from 'raceguard/postgres';
import { field, countAnomaly, type HandlerResult, type Scenario } from '../scenario.js';
import {
  autoIncrementKey,
  insertReturningId,
  postgresDb,
  recreateTables,
  transaction,
  truncate,
  type LabDb,
} from '../sql.js';

const AMOUNT = 10;
const START_BALANCE = 1_000_000;
/** Copies of each payment in the burst: a double click, and retries after a client timeout. */
const COPIES = 4;

const stores = new WeakMap<object, IdempotencyStore>();
/** One store per pool, made on first use. */
function storeOf<S extends IdempotencyStore>(pool: object, make: () => S): S {
  let store = stores.get(pool);
  if (store === undefined) {
    store = make();
    stores.set(pool, store);
  }
  return store as S;
}

/** Debit and record one charge: what every variant does once it decided to charge. */
async function charge(db: LabDb, request: Readonly<Record<string, unknown>>): Promise<number> {
  const id = await insertReturningId(
    db,
    'INSERT INTO payment_charges (customer, request_key, amount) VALUES ($1, $2, $3)',
    [field(request, 'customer'), field(request, 'key'), AMOUNT],
  );
  await db.query('UPDATE payment_accounts SET balance = balance - $2 WHERE customer = $1', [
    field(request, 'customer'),
    AMOUNT,
  ]);
  return Number(id);
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
    await recreateTables(
      db,
      ['payment_charges', 'payment_accounts', 'payment_idempotency'],
      [
        'CREATE TABLE payment_accounts (customer varchar(64) PRIMARY KEY, balance bigint NOT NULL)',
        `CREATE TABLE payment_charges (id ${autoIncrementKey(db)}, customer varchar(64) NOT NULL,
          request_key varchar(64) NOT NULL, amount bigint NOT NULL)`,
      ],
    );
    // The atomic fix: the client's request id becomes a unique key of the charge.
    if (strategy === 'atomic') {
      await db.query(
        'CREATE UNIQUE INDEX payment_charges_once ON payment_charges (customer, request_key)',
      );
    }
    if (strategy === 'idempotency-key') {
      if (db.dialect === 'postgres')
        await createIdempotencyTable(db.driver, { table: 'payment_idempotency' });
      else await createMysqlIdempotencyTable(db.driver, { table: 'payment_idempotency' });
    }
  },
  async seed(db, { concurrency }) {
    await truncate(db, 'payment_charges', 'payment_accounts');
    await truncate(db, 'payment_idempotency').catch(() => undefined);
    const customers = Array.from(
      { length: Math.max(1, Math.floor(concurrency / COPIES)) },
      (_, i) => `customer-${i}`,
    );
    await db.query(
      `INSERT INTO payment_accounts (customer, balance)
       VALUES ${customers.map((_, i) => `($${i + 2}, $1)`).join(', ')}`,
      [START_BALANCE, ...customers],
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
        const id = await insertReturningId(
          tx,
          'INSERT INTO payment_charges (customer, request_key, amount) VALUES ($1, $2, $3)',
          [field(request, 'customer'), field(request, 'key'), AMOUNT],
          { skipDuplicate: true },
        );
        if (id === undefined) {
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
        return { status: 200, body: { chargeId: id } };
      },
      retryOptions,
    );
  },
  optimistic() {
    return Promise.reject(new Error('the payment scenario has no optimistic variant'));
  },
  async idempotent(request, { pool, gap, retryOptions }) {
    const claim = {
      scope: field(request, 'customer'),
      key: field(request, 'key'),
      payload: { amount: request.amount },
    };
    try {
      // PostgreSQL: claim, charge and stored result in the handler's own
      // transaction. MySQL: the store's atomic claim, then the charge in a
      // transaction of its own, then the result (a crash in between leaves
      // a claim that a retry resumes after its lease).
      const { value } =
        pool.dialect === 'postgres'
          ? await idempotentTransaction(
              pool.driver,
              storeOf(
                pool,
                () =>
                  new PostgresIdempotencyStore({
                    client: pool.driver,
                    table: 'payment_idempotency',
                  }),
              ),
              { ...claim, transaction: retryOptions },
              async (tx) => {
                await gap();
                return { chargeId: await charge(postgresDb(tx), request) };
              },
            )
          : await idempotent(
              storeOf(
                pool,
                () =>
                  new MysqlIdempotencyStore({ client: pool.driver, table: 'payment_idempotency' }),
              ),
              claim,
              async () => {
                await gap();
                return {
                  chargeId: await transaction(pool, (tx) => charge(tx, request), retryOptions),
                };
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
      `SELECT c.request_key, count(*) AS charges, a.balance AS balance,
         (SELECT sum(amount) FROM payment_charges x WHERE x.customer = c.customer) AS debited
       FROM payment_charges c JOIN payment_accounts a USING (customer)
       GROUP BY c.customer, c.request_key, a.balance`,
    );
    for (const row of rows) {
      countAnomaly(anomalies, 'charged-twice', Number(row.charges) - 1);
      countAnomaly(
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
      countAnomaly(anomalies, 'different-charges-reported', ids.size - 1);
      countAnomaly(anomalies, 'success-without-charge', Number(!charged.has(key)));
    }
    return anomalies;
  },
};
