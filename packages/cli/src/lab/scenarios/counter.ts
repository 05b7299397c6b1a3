import { atomicIncrement, optimisticUpdate, recreateTables, truncate } from '../sql.js';
import { accepted, countAnomaly, numberColumn, scalar, type Scenario } from '../scenario.js';

/** Page views, stock received, points earned: K increments must add exactly K. */
export const counter: Scenario = {
  name: 'counter',
  title: 'counter',
  invariant: 'K accepted increments add exactly K',
  async createSchema(db) {
    await recreateTables(
      db,
      ['counter_counters'],
      [
        'CREATE TABLE counter_counters (id int PRIMARY KEY, value bigint NOT NULL, version int NOT NULL DEFAULT 0)',
      ],
    );
  },
  async seed(db) {
    await truncate(db, 'counter_counters');
    await db.query('INSERT INTO counter_counters (id, value) VALUES (1, 0)');
  },
  requests: ({ concurrency }) => Array.from({ length: concurrency }, () => ({ counterId: 1 })),
  target: (request) => ({
    table: 'counter_counters',
    key: { id: Number(request.counterId) },
    lockKey: `counter:${Number(request.counterId)}`,
  }),
  async checkThenAct(db, row, _request, { gap }) {
    const value = numberColumn(row, 'value');
    await gap();
    await db.query('UPDATE counter_counters SET value = $2 WHERE id = $1', [row.id, value + 1]);
    return { status: 200, body: { value: value + 1 } };
  },
  async atomic(request, { pool }) {
    const result = await atomicIncrement(pool, {
      table: 'counter_counters',
      key: { id: Number(request.counterId) },
      column: 'value',
      amount: 1,
    });
    return result.applied
      ? { status: 200, body: { value: numberColumn(result.row, 'value') } }
      : { status: 422, body: { error: 'not-found' } };
  },
  async optimistic(request, { pool, gap, retryOptions }) {
    const result = await optimisticUpdate(pool, {
      ...retryOptions,
      table: 'counter_counters',
      key: { id: Number(request.counterId) },
      update: async (row) => {
        await gap();
        return { value: numberColumn(row, 'value') + 1 };
      },
    });
    return { status: 200, body: { value: numberColumn(result.row, 'value') } };
  },
  async check(db, responses) {
    const anomalies = {};
    const value = await scalar(db, 'SELECT value FROM counter_counters WHERE id = 1');
    countAnomaly(anomalies, 'lost-increment', accepted(responses) - value);
    countAnomaly(anomalies, 'phantom-increment', value - accepted(responses));
    return anomalies;
  },
};
