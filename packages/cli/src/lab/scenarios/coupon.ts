import {
  atomicIncrement,
  autoIncrementKey,
  optimisticUpdate,
  recreateTables,
  transaction,
  truncate,
} from '../sql.js';
import { accepted, countAnomaly, numberColumn, scalar, type Scenario } from '../scenario.js';

const capFor = (concurrency: number): number => Math.max(1, Math.ceil(concurrency / 10));

/** "The first N customers get 20% off": a coupon with a redemption cap. */
export const coupon: Scenario = {
  name: 'coupon',
  title: 'coupon capped at N redemptions',
  invariant: 'never more than N redemptions; the counter equals the redemptions',
  async createSchema(db) {
    await recreateTables(
      db,
      ['coupon_redemptions', 'coupon_coupons'],
      [
        `CREATE TABLE coupon_coupons (code varchar(64) PRIMARY KEY, max_redemptions int NOT NULL,
          redeemed int NOT NULL DEFAULT 0, version int NOT NULL DEFAULT 0)`,
        `CREATE TABLE coupon_redemptions (id ${autoIncrementKey(db)}, code varchar(64) NOT NULL, customer varchar(64) NOT NULL)`,
      ],
    );
  },
  async seed(db, { concurrency }) {
    await truncate(db, 'coupon_redemptions', 'coupon_coupons');
    await db.query(`INSERT INTO coupon_coupons (code, max_redemptions) VALUES ('FIRST-N', $1)`, [
      capFor(concurrency),
    ]);
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, (_, i) => ({ code: 'FIRST-N', customer: `c-${i}` })),
  target: (request) => ({
    table: 'coupon_coupons',
    key: { code: String(request.code) },
    lockKey: `coupon:${String(request.code)}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    if (numberColumn(row, 'redeemed') >= numberColumn(row, 'max_redemptions'))
      return { status: 422, body: { error: 'coupon-exhausted' } };
    await gap();
    await db.query('INSERT INTO coupon_redemptions (code, customer) VALUES ($1, $2)', [
      row.code,
      request.customer,
    ]);
    await db.query('UPDATE coupon_coupons SET redeemed = redeemed + 1 WHERE code = $1', [row.code]);
    return { status: 200, body: { redeemed: true } };
  },
  atomic(request, { pool, retryOptions }) {
    return transaction(
      pool,
      async (tx) => {
        const counted = await atomicIncrement(tx, {
          table: 'coupon_coupons',
          key: { code: String(request.code) },
          column: 'redeemed',
          amount: 1,
          ceilingColumn: 'max_redemptions',
        });
        if (!counted.applied) return { status: 422, body: { error: 'coupon-exhausted' } };
        await tx.query('INSERT INTO coupon_redemptions (code, customer) VALUES ($1, $2)', [
          request.code,
          request.customer,
        ]);
        return { status: 200, body: { redeemed: true } };
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
          table: 'coupon_coupons',
          key: { code: String(request.code) },
          update: async (row) => {
            if (numberColumn(row, 'redeemed') >= numberColumn(row, 'max_redemptions')) return null;
            await gap();
            return { redeemed: numberColumn(row, 'redeemed') + 1 };
          },
        });
        if (!result.applied) return { status: 422, body: { error: 'coupon-exhausted' } };
        await tx.query('INSERT INTO coupon_redemptions (code, customer) VALUES ($1, $2)', [
          request.code,
          request.customer,
        ]);
        return { status: 200, body: { redeemed: true } };
      },
      { isolation: 'read committed' },
    );
  },
  async check(db, responses, { concurrency }) {
    const anomalies = {};
    const redemptions = await scalar(db, 'SELECT count(*) FROM coupon_redemptions');
    const counter = await scalar(db, `SELECT redeemed FROM coupon_coupons WHERE code = 'FIRST-N'`);
    countAnomaly(anomalies, 'over-redeemed', Math.max(0, redemptions - capFor(concurrency)));
    countAnomaly(anomalies, 'counter-mismatch', Math.abs(counter - redemptions));
    countAnomaly(
      anomalies,
      'responses-redemptions-mismatch',
      Math.abs(accepted(responses) - redemptions),
    );
    return anomalies;
  },
};
