/**
 * One of the processes of the thundering-herd test: 250 concurrent reads of
 * one cold key; the loader counts its calls in PostgreSQL. Reports to the
 * parent how many reads got the loaded value. argv: redis url, prefix, key.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import { LeaseCache } from '../../packages/raceguard/src/cache/lease-cache.js';

const [url, prefix, key] = process.argv.slice(2);
const client = new Redis(url ?? '');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const cache = new LeaseCache({ client, prefix: prefix ?? '', pollMs: 5, waitMs: 10_000 });
process.once('message', () => {
  void (async () => {
    const values = await Promise.all(
      Array.from({ length: 250 }, () =>
        cache.get(key ?? 'hot', async () => {
          await pool.query('UPDATE herd_loads SET n = n + 1');
          await new Promise((resolve) => setTimeout(resolve, 100));
          return 'loaded';
        }),
      ),
    );
    process.send?.(values.filter((v) => v === 'loaded').length);
    client.disconnect();
    await pool.end();
    process.disconnect();
  })();
});
process.send?.('ready');
