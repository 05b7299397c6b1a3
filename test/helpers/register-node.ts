/**
 * One node of the two-process last-writer-wins test: writes and reads a
 * register row in PostgreSQL, stamping with its own clock, which runs
 * `offsetMs` off the test's base time. argv: offsetMs, mode ('wall' | 'hlc'), base (ms).
 * env: DATABASE_URL, PGOPTIONS (the test's schema).
 * IPC in: { op: 'write', id, value } | { op: 'read', id }; out: { ok: true, applied? }.
 * The test kills it when done.
 */
import pg from 'pg';
import {
  HybridLogicalClock,
  hlcFromBytes,
  hlcToBytes,
} from '../../packages/raceguard/src/clock/index.js';

const offsetMs = Number(process.argv[2]);
const mode = process.argv[3];
const base = Number(process.argv[4]);
const startedAt = Date.now();
// Injected: both nodes start from the test's base time and advance 1 ms per real second, so the
// skew between them is the 300 ms the test sets, whatever a loaded machine's delays.
const now = (): number => base + offsetMs + Math.floor((Date.now() - startedAt) / 1000);
const clock = new HybridLogicalClock({ now, maxOffsetMs: 1000 });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

process.on('message', (command: { op: string; id: number; value?: string }) => {
  void (async () => {
    if (command.op === 'read') {
      const { rows } = await pool.query('SELECT stamp FROM registers WHERE id = $1', [command.id]);
      const stamp = rows[0]?.stamp as Uint8Array | undefined;
      if (mode === 'hlc' && stamp !== undefined) clock.receive(hlcFromBytes(stamp));
      process.send?.({ ok: true });
    } else if (command.op === 'write') {
      const { rowCount } =
        mode === 'hlc'
          ? await pool.query(
              'UPDATE registers SET value = $1, stamp = $2 WHERE id = $3 AND stamp < $2',
              [command.value, hlcToBytes(clock.now()), command.id],
            )
          : await pool.query(
              'UPDATE registers SET value = $1, wall = $2 WHERE id = $3 AND wall < $2',
              [command.value, now(), command.id],
            );
      process.send?.({ ok: true, applied: rowCount === 1 });
    }
  })();
});
process.send?.({ ok: true });
