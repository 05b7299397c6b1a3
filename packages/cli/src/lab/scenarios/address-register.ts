/**
 * Address register: a last-writer-wins register per customer, written by two
 * service nodes whose wall clocks are 300 ms apart (node A runs ahead). A
 * customer's address is saved on node A; 100 ms later the customer reads it
 * on node B and corrects it there. Stamped with wall-clock time, node B's
 * correction carries the smaller stamp and the register keeps the old
 * address; stamped with a hybrid logical clock that received node A's stamp
 * when node B read the row, the correction is later and is kept.
 */
import { HybridLogicalClock, hlcFromBytes, hlcToBytes } from 'raceguard/clock';
import type { ClockScenario, ClockTrial, ClockTrialContext } from '../clock-scenario.js';
import { countAnomaly } from '../scenario.js';
import { recreateTables, truncate } from '../sql.js';

/** How far node A's clock runs ahead of node B's. */
const SKEW_MS = 300;
/** How long after A's write the customer corrects the address on B. */
const LATER_MS = 100;

async function runTrial(context: ClockTrialContext): Promise<ClockTrial> {
  const { pool, strategy, keys } = context;
  await truncate(pool, 'lab_registers');
  const ids = Array.from({ length: keys }, (_, i) => i + 1);
  await pool.query(
    `INSERT INTO lab_registers (id, value, wall, stamp)
     VALUES ${ids.map((_, i) => `($${i + 2}, 'none', 0, $1)`).join(', ')}`,
    [Buffer.alloc(8), ...ids],
  );
  // The nodes' physical clocks, injected: A runs SKEW_MS ahead; time moves by hand (no sleeps).
  let elapsed = 0;
  const base = Date.now();
  const nodeA = { now: () => base + elapsed + SKEW_MS };
  const nodeB = { now: () => base + elapsed };
  const hlcA = new HybridLogicalClock({ now: nodeA.now, maxOffsetMs: 1000 });
  const hlcB = new HybridLogicalClock({ now: nodeB.now, maxOffsetMs: 1000 });
  const latenciesMs: number[] = [];
  let applied = 0;
  let refused = 0;

  /** Write `value` if its stamp is later than the row's; wall-clock ms, or an HLC stamp. */
  async function write(id: number, value: string, node: 'a' | 'b'): Promise<void> {
    const started = performance.now();
    const { rowCount } =
      strategy === 'hlc'
        ? await pool.query(
            'UPDATE lab_registers SET value = $1, stamp = $2 WHERE id = $3 AND stamp < $2',
            // A Buffer: mysql2 sends only Buffers as binary.
            [value, Buffer.from(hlcToBytes((node === 'a' ? hlcA : hlcB).now())), id],
          )
        : await pool.query(
            'UPDATE lab_registers SET value = $1, wall = $2 WHERE id = $3 AND wall < $2',
            [value, (node === 'a' ? nodeA : nodeB).now(), id],
          );
    latenciesMs.push(performance.now() - started);
    if (rowCount === 1) applied++;
    else refused++;
  }

  const started = performance.now();
  await Promise.all(
    Array.from({ length: keys }, (_, i) => write(i + 1, `old address ${i + 1}`, 'a')),
  );
  elapsed += LATER_MS;
  await Promise.all(
    Array.from({ length: keys }, async (_, i) => {
      const id = i + 1;
      // Node B reads the row (and, with HLC, takes in its stamp), then the customer corrects it.
      const { rows } = await pool.query('SELECT stamp FROM lab_registers WHERE id = $1', [id]);
      const stamp = rows[0]?.stamp;
      if (strategy === 'hlc' && stamp instanceof Uint8Array) hlcB.receive(hlcFromBytes(stamp));
      await write(id, `corrected address ${id}`, 'b');
    }),
  );
  const { rows } = await pool.query(
    "SELECT count(*) AS n FROM lab_registers WHERE value NOT LIKE 'corrected address %'",
  );
  const anomalies: Record<string, number> = {};
  countAnomaly(anomalies, 'later-write-lost', Number(rows[0]?.n));
  return { anomalies, applied, refused, latenciesMs, durationMs: performance.now() - started };
}

export const addressRegister: ClockScenario = {
  shape: 'clocks',
  name: 'address-register',
  title: 'Last writer wins across two nodes whose clocks are 300 ms apart',
  invariant: 'a correction made after reading the saved address is the one kept',
  strategies: ['unsafe', 'hlc'],
  async createSchema(pool) {
    // Stamps compare as bytes: bytea on PostgreSQL, varbinary on MySQL.
    await recreateTables(
      pool,
      ['lab_registers'],
      [
        `CREATE TABLE lab_registers (id int PRIMARY KEY, value varchar(64) NOT NULL, wall bigint NOT NULL,
          stamp ${pool.dialect === 'postgres' ? 'bytea' : 'varbinary(8)'} NOT NULL)`,
      ],
    );
  },
  runTrial,
};
