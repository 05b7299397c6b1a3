/**
 * One process of the combiner's exactness test: `callers` concurrent
 * callers send `count` requests with random amounts over `keys` rows through
 * one combiner, and print every request's outcome as JSON lines.
 */
import pg from 'pg';
import { createCombiner } from '../../packages/raceguard/src/postgres/combiner.js';

const [databaseUrl, searchPath, worker, count, callers, keys, seed, durable] = process.argv.slice(
  2,
) as [string, string, string, string, string, string, string, string];
const pool = new pg.Pool({
  connectionString: databaseUrl,
  max: 4,
  options: `-c search_path=${searchPath}`,
});
pool.on('error', () => undefined);

// A small deterministic generator, so a failing run can be repeated.
let state = Number(seed) >>> 0 || 1;
const random = (): number => {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 2 ** 32;
};

const combiner = createCombiner(pool, {
  table: 'hot_rows',
  key: ['id'],
  column: 'stock',
  ...(durable === 'durable' && { record: { table: 'hot_orders', columns: ['row_id', 'request'] } }),
});
const total = Number(count);
let next = 0;
const lines: string[] = [];
await Promise.all(
  Array.from({ length: Number(callers) }, async () => {
    while (next < total) {
      const index = next++;
      const id = 1 + Math.floor(random() * Number(keys));
      const amount = 1 + Math.floor(random() * 5);
      const request = `${worker}-${index}`;
      const result = await combiner.apply({
        key: { id },
        amount,
        ...(durable === 'durable' && { record: { row_id: id, request } }),
      });
      lines.push(JSON.stringify({ worker, request, id, amount, ...result }));
    }
  }),
);
await combiner.close();
await pool.end();
process.stdout.write(`${lines.join('\n')}\n`);
