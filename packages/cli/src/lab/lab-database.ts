/**
 * The lab's database: PostgreSQL (a postgres:// URL, DATABASE_URL, or an
 * embedded server) or MySQL / MariaDB (a mysql:// URL), a scratch schema
 * (PostgreSQL) or database (MySQL) of its own, and pools on it, torn down
 * together. Shared by `runLab` and `serveLab`.
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from 'raceguard';
import { createScratchSchema, usePostgres } from 'raceguard/testing';
import { mysqlDb, postgresDb, type LabDialect, type LabPool } from './sql.js';

/** An open lab database. */
export interface LabDatabase {
  readonly dialect: LabDialect;
  /** `true` when an embedded server was started for the lab. */
  readonly embedded: boolean;
  /** The server's connection string (without the lab's schema or database). */
  readonly url: string;
  /** The lab's schema (PostgreSQL) or database (MySQL) on that server: its tables live there. */
  readonly schema: string;
  /** A connection string whose default schema or database is the lab's, for `sql()` checks. */
  readonly labUrl: string;
  /** A new pool on the lab's schema, ended by `close()`. */
  newPool(max: number): LabPool;
  /** End every pool, drop the schema, stop an embedded server; each step runs even if one before failed. */
  close(): Promise<void>;
}

/** The dialect of a database URL: `mysql://` and `mariadb://` are MySQL, anything else PostgreSQL. */
export function dialectOf(url: string | undefined): LabDialect {
  return url !== undefined && /^(mysql|mariadb):\/\//i.test(url) ? 'mysql' : 'postgres';
}

/** Open the lab's database; what was started is stopped again if a later step fails. */
export async function openLabDatabase(
  options: { readonly databaseUrl?: string | undefined; readonly signal?: AbortSignal } = {},
): Promise<LabDatabase> {
  // An empty DATABASE_URL counts as unset, as usePostgres reads it.
  const url = options.databaseUrl ?? (process.env.DATABASE_URL || undefined);
  return dialectOf(url) === 'mysql' ? openMysql(url as string) : openPostgres(options);
}

/** Runs the steps in reverse order of registration, each even if one before failed. */
function teardown(): {
  readonly push: (step: () => Promise<unknown>) => void;
  readonly close: () => Promise<void>;
} {
  const steps: (() => Promise<unknown>)[] = [];
  return {
    push: (step) => void steps.push(step),
    async close() {
      for (const step of steps.splice(0).reverse()) await step().catch(() => undefined);
    },
  };
}

async function openPostgres(options: {
  readonly databaseUrl?: string | undefined;
  readonly signal?: AbortSignal;
}): Promise<LabDatabase> {
  let driver: typeof import('pg').default;
  try {
    driver = (await import('pg')).default;
  } catch (error) {
    throw new InvalidArgumentError('pg', 'installed (npm install pg) to run the lab', error);
  }
  const server = await usePostgres({
    url: options.databaseUrl,
    ...(options.signal && { signal: options.signal }),
  });
  const cleanup = teardown();
  cleanup.push(() => server.stop());
  try {
    const admin = new driver.Pool({ connectionString: server.url, max: 2 });
    // An idle connection cut by a server shutdown must not crash the process.
    admin.on('error', () => undefined);
    cleanup.push(() => admin.end());
    const schema = await createScratchSchema(admin, 'raceguard_lab');
    cleanup.push(() => schema.drop());
    return {
      dialect: 'postgres',
      embedded: server.embedded,
      url: server.url,
      schema: schema.name,
      labUrl: withSearchPath(server.url, schema.name),
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
        return postgresDb(pool);
      },
      close: cleanup.close,
    };
  } catch (error) {
    await cleanup.close();
    throw error;
  }
}

async function openMysql(url: string): Promise<LabDatabase> {
  let driver: typeof import('mysql2/promise');
  try {
    driver = await import('mysql2/promise');
  } catch (error) {
    throw new InvalidArgumentError(
      'mysql2',
      'installed (npm install mysql2) to run the lab on MySQL',
      error,
    );
  }
  let address: URL;
  try {
    address = new URL(url.replace(/^mariadb:/i, 'mysql:'));
  } catch {
    throw new InvalidArgumentError('databaseUrl', 'a mysql://user:password@host:port URL', url);
  }
  const connection = {
    host: address.hostname,
    port: Number(address.port || 3306),
    user: decodeURIComponent(address.username || 'root'),
    password: decodeURIComponent(address.password),
  };
  const cleanup = teardown();
  try {
    const admin = await driver.createConnection(connection);
    cleanup.push(() => admin.end());
    // A database of the lab's own, so concurrent runs on one server never collide.
    const schema = `raceguard_lab_${process.pid}_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE \`${schema}\``);
    cleanup.push(() => admin.query(`DROP DATABASE IF EXISTS \`${schema}\``));
    const server = `mysql://${address.username ? `${address.username}${address.password ? `:${address.password}` : ''}@` : ''}${address.host}`;
    return {
      dialect: 'mysql',
      embedded: false,
      url: server,
      schema,
      labUrl: `${server}/${schema}`,
      newPool(max) {
        const pool = driver.createPool({ ...connection, database: schema, connectionLimit: max });
        cleanup.push(() => pool.end());
        return mysqlDb(pool);
      },
      close: cleanup.close,
    };
  } catch (error) {
    await cleanup.close();
    throw error;
  }
}

/** `url` with `options=-c search_path=<schema>`, which pg and psql honour. */
function withSearchPath(url: string, schema: string): string {
  // %20, not '+': libpq (psql) decodes only percent escapes.
  const options = `options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return url.includes('?') ? `${url}&${options}` : `${url}?${options}`;
}
