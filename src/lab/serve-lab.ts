/** `raceguard lab --serve`: the lab service alone, as a target for `raceguard run`. */
import type pg from 'pg';
import { InvalidArgumentError } from '../core/errors.js';
import { createScratchSchema } from '../postgres/index.js';
import { usePostgres } from '../postgres/server.js';
import { createLabServer } from './server.js';
import { SCENARIOS } from './scenarios/index.js';

/** Options of {@link serveLab}. */
export interface ServeLabOptions {
  /** Loopback port; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** The awaited pause between read and write, ms. @default 2 */
  readonly gapMs?: number;
  /** Connections to PostgreSQL. @default 32 */
  readonly poolSize?: number;
  /** DATABASE_URL, or an embedded server when unset. */
  readonly databaseUrl?: string;
}

/** A running lab service. */
export interface ServedLab extends AsyncDisposable {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Start PostgreSQL (embedded unless a URL is given), a scratch schema and
 * the lab service on a loopback port; close everything with `close()`.
 */
export async function serveLab(options: ServeLabOptions = {}): Promise<ServedLab> {
  let pgModule: typeof pg;
  try {
    pgModule = (await import('pg')).default;
  } catch (error) {
    throw new InvalidArgumentError('pg', 'installed (npm install pg) to serve the lab', error);
  }
  const server = await usePostgres({ url: options.databaseUrl });
  const admin = new pgModule.Pool({ connectionString: server.url, max: 2 });
  admin.on('error', () => undefined);
  const schema = await createScratchSchema(admin, 'raceguard_lab');
  const pool = new pgModule.Pool({
    connectionString: server.url,
    max: options.poolSize ?? 32,
    options: schema.connectionOptions,
  });
  pool.on('error', () => undefined);
  pool.on('connect', (connection) => connection.on('error', () => undefined));
  const app = createLabServer({ pool, scenarios: SCENARIOS, gapMs: options.gapMs ?? 2 });
  const url = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const close = async (): Promise<void> => {
    await app.close();
    await pool.end();
    await schema.drop();
    await admin.end();
    await server.stop();
  };
  return { url, close, [Symbol.asyncDispose]: close };
}
