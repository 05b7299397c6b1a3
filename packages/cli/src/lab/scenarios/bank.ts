import {
  atomicDecrement,
  autoIncrementKey,
  optimisticUpdate,
  recreateTables,
  transaction,
  truncate,
} from '../sql.js';
import { accepted, countAnomaly, numberColumn, scalar, type Scenario } from '../scenario.js';

const AMOUNT = 100;
const balanceFor = (concurrency: number): number =>
  Math.max(1, Math.ceil(concurrency / 10)) * AMOUNT;

/** Two (or a hundred) ATM withdrawals from one account at once. */
export const bank: Scenario = {
  name: 'bank',
  title: 'bank withdrawal',
  invariant: 'balance never negative; sum of accepted withdrawals == amount debited',
  async createSchema(db) {
    await recreateTables(
      db,
      ['bank_withdrawals', 'bank_accounts'],
      [
        'CREATE TABLE bank_accounts (id int PRIMARY KEY, balance bigint NOT NULL, version int NOT NULL DEFAULT 0)',
        `CREATE TABLE bank_withdrawals (id ${autoIncrementKey(db)}, account_id int NOT NULL, amount bigint NOT NULL)`,
      ],
    );
  },
  async seed(db, { concurrency }) {
    await truncate(db, 'bank_withdrawals', 'bank_accounts');
    await db.query('INSERT INTO bank_accounts (id, balance) VALUES (1, $1)', [
      balanceFor(concurrency),
    ]);
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, () => ({ accountId: 1, amount: AMOUNT })),
  target: (request) => ({
    table: 'bank_accounts',
    key: { id: Number(request.accountId) },
    lockKey: `account:${Number(request.accountId)}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    const amount = Number(request.amount);
    const balance = numberColumn(row, 'balance');
    if (balance < amount) return { status: 422, body: { error: 'insufficient-funds' } };
    await gap();
    // The classic lost update: the new balance is computed from the value read before the gap.
    await db.query('UPDATE bank_accounts SET balance = $2 WHERE id = $1', [
      row.id,
      balance - amount,
    ]);
    await db.query('INSERT INTO bank_withdrawals (account_id, amount) VALUES ($1, $2)', [
      row.id,
      amount,
    ]);
    return { status: 200, body: { withdrawn: amount } };
  },
  atomic(request, { pool, retryOptions }) {
    return transaction(
      pool,
      async (tx) => {
        const amount = Number(request.amount);
        const debit = await atomicDecrement(tx, {
          table: 'bank_accounts',
          key: { id: Number(request.accountId) },
          column: 'balance',
          amount,
        });
        if (!debit.applied) return { status: 422, body: { error: 'insufficient-funds' } };
        await tx.query('INSERT INTO bank_withdrawals (account_id, amount) VALUES ($1, $2)', [
          request.accountId,
          amount,
        ]);
        return { status: 200, body: { withdrawn: amount } };
      },
      retryOptions,
    );
  },
  optimistic(request, { pool, gap, retryOptions }) {
    const amount = Number(request.amount);
    return transaction(
      pool,
      async (tx) => {
        const result = await optimisticUpdate(tx, {
          ...retryOptions,
          table: 'bank_accounts',
          key: { id: Number(request.accountId) },
          update: async (row) => {
            if (numberColumn(row, 'balance') < amount) return null;
            await gap();
            return { balance: numberColumn(row, 'balance') - amount };
          },
        });
        if (!result.applied) return { status: 422, body: { error: 'insufficient-funds' } };
        await tx.query('INSERT INTO bank_withdrawals (account_id, amount) VALUES ($1, $2)', [
          request.accountId,
          amount,
        ]);
        return { status: 200, body: { withdrawn: amount } };
      },
      { isolation: 'read committed' },
    );
  },
  async check(db, responses, { concurrency }) {
    const anomalies = {};
    const balance = await scalar(db, 'SELECT balance FROM bank_accounts WHERE id = 1');
    const withdrawn = await scalar(db, 'SELECT coalesce(sum(amount), 0) FROM bank_withdrawals');
    const debited = balanceFor(concurrency) - balance;
    countAnomaly(anomalies, 'negative-balance', balance < 0 ? 1 : 0);
    countAnomaly(anomalies, 'withdrawn-not-debited', Math.max(0, (withdrawn - debited) / AMOUNT));
    countAnomaly(anomalies, 'debited-not-withdrawn', Math.max(0, (debited - withdrawn) / AMOUNT));
    countAnomaly(
      anomalies,
      'responses-withdrawals-mismatch',
      Math.abs(accepted(responses) * AMOUNT - withdrawn) / AMOUNT,
    );
    return anomalies;
  },
};
