/**
 * One process of the combined hot-row benchmark (spawned by hot-row.ts):
 * `clients` concurrent callers decrement row 1 of `hot` for `durationMs`
 * from the agreed start time, through the combiner or as the per-request
 * baseline, in plain or durable mode (one order row per granted request).
 * Prints `{ ops, p99Ms, batches }` as JSON.
 *
 *   tsx bench/hot-row-worker.ts <url> <schema> <combined|baseline> <plain|durable> <clients> <durationMs> <startAt>
 */
import pg from 'pg';
import { createCombiner } from '../packages/raceguard/dist/postgres/index.js';

const [url, schema, mode, durability, clientsText, durationText, startText] = process.argv.slice(
  2,
) as [string, string, string, string, string, string, string];
const clients = Number(clientsText);
const durable = durability === 'durable';
const pool = new pg.Pool({
  connectionString: url,
  max: mode === 'combined' ? 4 : clients,
  options: `-c search_path=${schema}`,
});
pool.on('error', () => undefined);
const combiner = createCombiner(pool, {
  table: 'hot',
  key: ['id'],
  column: 'v',
  ...(durable && { record: { table: 'hot_orders', columns: ['row_id', 'request'] } }),
});
let sequence = 0;
const batches = new Set<number>();
const tag = `${process.pid}-`;

/** One request of the baseline: what a service without the combiner does. */
async function baseline(): Promise<void> {
  if (!durable) {
    await pool.query('UPDATE hot SET v = v - 1 WHERE id = 1 AND v >= 1');
    return;
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('UPDATE hot SET v = v - 1 WHERE id = 1 AND v >= 1');
    await client.query('INSERT INTO hot_orders (row_id, request) VALUES (1, $1)', [
      `${tag}${sequence++}`,
    ]);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

async function combined(): Promise<void> {
  const result = await combiner.apply({
    key: { id: 1 },
    amount: 1,
    ...(durable && { record: { row_id: 1, request: `${tag}${sequence++}` } }),
  });
  batches.add(result.batch.id);
}

const op = mode === 'combined' ? combined : baseline;
// Open the connections and prepare the statements before the clock starts.
await Promise.all(Array.from({ length: clients }, () => op()));
batches.clear();
await new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(startText) - Date.now())));
const until = performance.now() + Number(durationText);
const latencies: number[] = [];
let ops = 0;
await Promise.all(
  Array.from({ length: clients }, async () => {
    while (performance.now() < until) {
      const started = performance.now();
      await op();
      latencies.push(performance.now() - started);
      ops++;
    }
  }),
);
latencies.sort((a, b) => a - b);
const p99Ms = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? 0;
await combiner.close();
await pool.end();
process.stdout.write(`${JSON.stringify({ ops, p99Ms, batches: batches.size })}\n`);
