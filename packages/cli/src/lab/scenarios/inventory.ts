import {
  atomicDecrement,
  autoIncrementKey,
  optimisticUpdate,
  recreateTables,
  transaction,
  truncate,
} from '../sql.js';
import { accepted, field, countAnomaly, numberColumn, scalar, type Scenario } from '../scenario.js';

const stockFor = (concurrency: number): number => Math.max(1, Math.ceil(concurrency / 10));

/** Many buyers, few units: the last units of a product sold to a burst of buyers. */
export const inventory: Scenario = {
  name: 'inventory',
  title: 'inventory purchase',
  invariant: 'stock never negative; orders == initial stock - final stock',
  async createSchema(db) {
    await recreateTables(
      db,
      ['inventory_orders', 'inventory_products'],
      [
        'CREATE TABLE inventory_products (id int PRIMARY KEY, stock int NOT NULL, version int NOT NULL DEFAULT 0)',
        `CREATE TABLE inventory_orders (id ${autoIncrementKey(db)}, product_id int NOT NULL, buyer varchar(64) NOT NULL)`,
      ],
    );
  },
  async seed(db, { concurrency }) {
    await truncate(db, 'inventory_orders', 'inventory_products');
    await db.query('INSERT INTO inventory_products (id, stock) VALUES (1, $1)', [
      stockFor(concurrency),
    ]);
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, (_, i) => ({ productId: 1, buyer: `buyer-${i}` })),
  target: (request) => ({
    table: 'inventory_products',
    key: { id: Number(request.productId) },
    lockKey: `inventory:${field(request, 'productId')}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    if (numberColumn(row, 'stock') < 1) return { status: 422, body: { error: 'sold-out' } };
    await gap();
    await db.query('UPDATE inventory_products SET stock = stock - 1 WHERE id = $1', [row.id]);
    await db.query('INSERT INTO inventory_orders (product_id, buyer) VALUES ($1, $2)', [
      row.id,
      request.buyer,
    ]);
    return { status: 200, body: { purchased: true } };
  },
  atomic(request, { pool, retryOptions }) {
    return transaction(
      pool,
      async (tx) => {
        const taken = await atomicDecrement(tx, {
          table: 'inventory_products',
          key: { id: Number(request.productId) },
          column: 'stock',
          amount: 1,
        });
        if (!taken.applied) return { status: 422, body: { error: 'sold-out' } };
        await tx.query('INSERT INTO inventory_orders (product_id, buyer) VALUES ($1, $2)', [
          request.productId,
          request.buyer,
        ]);
        return { status: 200, body: { purchased: true } };
      },
      retryOptions,
    );
  },
  optimistic(request, { pool, gap, retryOptions }) {
    return transaction(
      pool,
      async (tx) => {
        const result = await optimisticUpdate(tx, {
          ...retryOptions,
          table: 'inventory_products',
          key: { id: Number(request.productId) },
          update: async (row) => {
            if (numberColumn(row, 'stock') < 1) return null;
            await gap();
            return { stock: numberColumn(row, 'stock') - 1 };
          },
        });
        if (!result.applied) return { status: 422, body: { error: 'sold-out' } };
        await tx.query('INSERT INTO inventory_orders (product_id, buyer) VALUES ($1, $2)', [
          request.productId,
          request.buyer,
        ]);
        return { status: 200, body: { purchased: true } };
      },
      { isolation: 'read committed' },
    );
  },
  async check(db, responses, { concurrency }) {
    const anomalies = {};
    const stock = await scalar(db, 'SELECT stock FROM inventory_products WHERE id = 1');
    const orders = await scalar(db, 'SELECT count(*) FROM inventory_orders');
    countAnomaly(anomalies, 'negative-stock', stock < 0 ? 1 : 0);
    countAnomaly(anomalies, 'oversold', Math.max(0, orders - stockFor(concurrency)));
    countAnomaly(
      anomalies,
      'orders-stock-mismatch',
      Math.abs(orders - (stockFor(concurrency) - stock)),
    );
    countAnomaly(anomalies, 'responses-orders-mismatch', Math.abs(accepted(responses) - orders));
    return anomalies;
  },
};
