import {
  autoIncrementKey,
  optimisticUpdate,
  recreateTables,
  transaction,
  truncate,
} from '../sql.js';
import { accepted, countAnomaly, scalar, type Scenario } from '../scenario.js';

/** The last seat on a flight (or the last concert ticket), wanted by everyone at once. */
export const seat: Scenario = {
  name: 'seat',
  title: 'last seat',
  invariant: 'at most one booking per seat; the seat holder is the one booking confirmed',
  async createSchema(db) {
    await recreateTables(
      db,
      ['seat_bookings', 'seat_seats'],
      [
        'CREATE TABLE seat_seats (id varchar(16) PRIMARY KEY, booked_by varchar(64), version int NOT NULL DEFAULT 0)',
        `CREATE TABLE seat_bookings (id ${autoIncrementKey(db)}, seat_id varchar(16) NOT NULL, passenger varchar(64) NOT NULL)`,
      ],
    );
  },
  async seed(db) {
    await truncate(db, 'seat_bookings', 'seat_seats');
    await db.query(`INSERT INTO seat_seats (id) VALUES ('12A')`);
  },
  requests: ({ concurrency }) =>
    Array.from({ length: concurrency }, (_, i) => ({ seatId: '12A', passenger: `p-${i}` })),
  target: (request) => ({
    table: 'seat_seats',
    key: { id: String(request.seatId) },
    lockKey: `seat:${String(request.seatId)}`,
  }),
  async checkThenAct(db, row, request, { gap }) {
    if (row.booked_by !== null) return { status: 422, body: { error: 'seat-taken' } };
    await gap();
    await db.query('UPDATE seat_seats SET booked_by = $2 WHERE id = $1', [
      row.id,
      request.passenger,
    ]);
    await db.query('INSERT INTO seat_bookings (seat_id, passenger) VALUES ($1, $2)', [
      row.id,
      request.passenger,
    ]);
    return { status: 200, body: { booked: request.passenger } };
  },
  atomic(request, { pool, retryOptions }) {
    return transaction(
      pool,
      async (tx) => {
        // The claim and its condition in one statement: only a free seat can be taken.
        const claimed = await tx.query(
          'UPDATE seat_seats SET booked_by = $2 WHERE id = $1 AND booked_by IS NULL',
          [request.seatId, request.passenger],
        );
        if (claimed.rowCount !== 1) return { status: 422, body: { error: 'seat-taken' } };
        await tx.query('INSERT INTO seat_bookings (seat_id, passenger) VALUES ($1, $2)', [
          request.seatId,
          request.passenger,
        ]);
        return { status: 200, body: { booked: request.passenger } };
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
          table: 'seat_seats',
          key: { id: String(request.seatId) },
          update: async (row) => {
            if (row.booked_by !== null) return null;
            await gap();
            return { booked_by: request.passenger };
          },
        });
        if (!result.applied) return { status: 422, body: { error: 'seat-taken' } };
        await tx.query('INSERT INTO seat_bookings (seat_id, passenger) VALUES ($1, $2)', [
          request.seatId,
          request.passenger,
        ]);
        return { status: 200, body: { booked: request.passenger } };
      },
      { isolation: 'read committed' },
    );
  },
  async check(db, responses) {
    const anomalies = {};
    const bookings = await scalar(db, 'SELECT count(*) FROM seat_bookings');
    const { rows } = await db.query(`SELECT booked_by FROM seat_seats WHERE id = '12A'`);
    const winners = responses.filter((r) => r.status === 200);
    countAnomaly(anomalies, 'double-booking', Math.max(0, bookings - 1));
    countAnomaly(anomalies, 'confirmed-but-not-seated', Math.max(0, accepted(responses) - 1));
    if (winners.length === 1 && rows[0]?.booked_by !== winners[0]?.request.passenger)
      countAnomaly(anomalies, 'holder-mismatch', 1);
    return anomalies;
  },
};
