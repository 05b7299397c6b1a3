/**
 * The lab's database: PostgreSQL (DATABASE_URL or embedded), a scratch
 * schema of its own, and pools on that schema, torn down together. Shared
 * by `runLab` and `serveLab`.
 */
import type pg from 'pg';
import { InvalidArgumentError } from 'raceguard';
import { createScratchSchema, usePostgres } from 'raceguard/testing';

/** An open lab database. */
export interface LabDatabase {
  /** `true` when an embedded server was started for the lab. */
  readonly embedded: boolean;
  /** The server's connection string (without the schema). */
  readonly url: string;
  /** The lab's schema on that server: its tables live there. */
  readonly schema: string;
  /** A new pool on the lab's schema, ended by `close()`. */
  newPool(max: number): pg.Pool;
  /** End every pool, drop the schema, stop an embedded server; each step runs even if one before failed. */
  close(): Promise<void>;
}

/** Open the lab's database; what was started is stopped again if a later step fails. */
export async function openLabDatabase(
  options: { readonly databaseUrl?: string | undefined; readonly signal?: AbortSignal } = {},
): Promise<LabDatabase> {
  let driver: typeof pg;
  try {
    driver = (await import('pg')).default;
  } catch (error) {
    throw new InvalidArgumentError('pg', 'installed (npm install pg) to run the lab', error);
  }
  const server = await usePostgres({
    url: options.databaseUrl,
    ...(options.signal && { signal: options.signal }),
  });
  // Torn down in reverse order of creation, whatever happens.
  const cleanup: (() => Promise<unknown>)[] = [() => server.stop()];
  const close = async (): Promise<void> => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => undefined);
  };
  try {
    const admin = new driver.Pool({ connectionString: server.url, max: 2 });
    // An idle connection cut by a server shutdown must not crash the process.
    admin.on('error', () => undefined);
    cleanup.push(() => admin.end());
    const schema = await createScratchSchema(admin, 'raceguard_lab');
    cleanup.push(() => schema.drop());
    return {
      embedded: server.embedded,
      url: server.url,
      schema: schema.name,
      newPool(max) {
        const pool = new driver.Pool({
          connectionString: server.url,
          max,
          options: schema.connectionOptions,
        });
        // Failures reach the queries that hit them; a connection cut while idle or
        // during shutdown (Ctrl-C stops the embedded server) must not crash the process.
        pool.on('error', () => undefined);
        pool.on('connect', (connection) => connection.on('error', () => undefined));
        cleanup.push(() => pool.end());
        return pool;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
