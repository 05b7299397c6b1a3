import pg from 'pg';
import { createScratchSchema } from '../../packages/raceguard/src/testing/scratch-schema.js';
import { usePostgres } from '../../packages/raceguard/src/testing/postgres.js';

export interface TestDatabase {
  readonly pool: pg.Pool;
  readonly url: string;
  readonly schema: string;
  /** A second pool on the same schema, for a competing client. */
  newPool(max?: number): pg.Pool;
  close(): Promise<void>;
}

/**
 * A real PostgreSQL for one test file, in a schema of its own: the server of
 * DATABASE_URL (set by scripts/test.ts for the whole suite), or an embedded
 * one when a file is run alone.
 */
export async function openTestDatabase(max = 30): Promise<TestDatabase> {
  const server = await usePostgres();
  const admin = new pg.Pool({ connectionString: server.url, max: 2 });
  admin.on('error', () => undefined);
  const schema = await createScratchSchema(admin, 'rg_test');
  const pools: pg.Pool[] = [];
  const newPool = (size = max): pg.Pool => {
    const pool = new pg.Pool({
      connectionString: server.url,
      max: size,
      options: schema.connectionOptions,
    });
    pool.on('error', () => undefined);
    pool.on('connect', (connection) => connection.on('error', () => undefined));
    pools.push(pool);
    return pool;
  };
  const pool = newPool();
  return {
    pool,
    url: server.url,
    schema: schema.name,
    newPool,
    async close() {
      for (const p of pools) if (!p.ended && !p.ending) await p.end();
      await schema.drop();
      await admin.end();
      await server.stop();
    },
  };
}
