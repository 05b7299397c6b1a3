import { optimisticUpdate, recreateTables, truncate } from '../sql.js';
import { countAnomaly, type Scenario } from '../scenario.js';

/** Two loan officers open the same application; one approves, one rejects, at the same moment. */
export const loan: Scenario = {
  name: 'loan',
  title: 'loan approval',
  invariant:
    'exactly one decision succeeds and is the final status; every other officer gets a conflict',
  async createSchema(db) {
    await recreateTables(
      db,
      ['loan_loans'],
      [
        `CREATE TABLE loan_loans (id int PRIMARY KEY, status varchar(16) NOT NULL, decided_by varchar(64),
          version int NOT NULL DEFAULT 0)`,
      ],
    );
  },
  async seed(db) {
    await truncate(db, 'loan_loans');
    await db.query(`INSERT INTO loan_loans (id, status) VALUES (1, 'pending')`);
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, (_, i) => ({
      loanId: 1,
      officer: `officer-${i}`,
      decision: i % 2 === 0 ? 'approved' : 'rejected',
    })),
  target: (request) => ({
    table: 'loan_loans',
    key: { id: Number(request.loanId) },
    lockKey: `loan:${Number(request.loanId)}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    if (row.status !== 'pending')
      return { status: 409, body: { error: 'already-decided', status: row.status } };
    await gap();
    await db.query('UPDATE loan_loans SET status = $2, decided_by = $3 WHERE id = $1', [
      row.id,
      request.decision,
      request.officer,
    ]);
    return { status: 200, body: { status: request.decision } };
  },
  async atomic(request, { pool }) {
    // The decision and its condition in one statement: only a pending loan can be decided.
    const { rowCount } = await pool.query(
      `UPDATE loan_loans SET status = $2, decided_by = $3 WHERE id = $1 AND status = 'pending'`,
      [request.loanId, request.decision, request.officer],
    );
    return rowCount === 1
      ? { status: 200, body: { status: request.decision } }
      : { status: 409, body: { error: 'already-decided' } };
  },
  async optimistic(request, { pool, gap, retryOptions }) {
    const result = await optimisticUpdate(pool, {
      ...retryOptions,
      table: 'loan_loans',
      key: { id: Number(request.loanId) },
      update: async (row) => {
        if (row.status !== 'pending') return null;
        await gap();
        return { status: request.decision, decided_by: request.officer };
      },
    });
    return result.applied
      ? { status: 200, body: { status: request.decision } }
      : { status: 409, body: { error: 'already-decided', status: result.row.status } };
  },
  async check(db, responses) {
    const anomalies = {};
    const { rows } = await db.query('SELECT status, decided_by FROM loan_loans WHERE id = 1');
    const final = rows[0];
    const winners = responses.filter((r) => r.status === 200);
    countAnomaly(anomalies, 'silent-overwrite', winners.length - 1);
    countAnomaly(anomalies, 'no-decision', winners.length === 0 ? 1 : 0);
    countAnomaly(
      anomalies,
      'unexpected-response',
      responses.filter((r) => r.status !== 200 && r.status !== 409).length,
    );
    if (winners.length === 1 && final?.decided_by !== winners[0]?.request.officer)
      countAnomaly(anomalies, 'final-state-mismatch', 1);
    return anomalies;
  },
};
