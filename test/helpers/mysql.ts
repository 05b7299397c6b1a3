import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import {
  mysqlReachable,
  startMariaDbServer,
} from '../../packages/raceguard/src/testing/mariadb.js';

/**
 * A MySQL server to test against: MYSQL_URL (set by scripts/test.ts), else
 * the machine's server on 3306, else a throwaway MariaDB started here
 * (`stop` stops it).
 */
export async function useMysqlServer(): Promise<{ url: string; stop?: () => Promise<void> }> {
  if (process.env.MYSQL_URL !== undefined) return { url: process.env.MYSQL_URL };
  if (await mysqlReachable('mysql://root@127.0.0.1:3306/test'))
    return { url: 'mysql://root@127.0.0.1:3306/test' };
  const server = await startMariaDbServer();
  return { url: server.url, stop: () => server.stop() };
}

export interface TestMysql {
  readonly pool: mysql.Pool;
  readonly database: string;
  /** Where the database is, for clients that open their own connections (ORMs). */
  readonly connection: {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    readonly password: string;
    readonly database: string;
  };
  /** Another pool on the same database. */
  newPool(size?: number): mysql.Pool;
  close(): Promise<void>;
}

/**
 * A database of its own on a real MySQL/MariaDB: MYSQL_URL (set by
 * scripts/test.ts), else the machine's server on 3306, else a throwaway
 * MariaDB started here.
 */
export async function openTestMysql(size = 30): Promise<TestMysql> {
  const { url, stop: stopServer } = await useMysqlServer();
  const database = `rg_test_${randomBytes(4).toString('hex')}`;
  const admin = await mysql.createConnection(url);
  await admin.query(`CREATE DATABASE \`${database}\``);
  await admin.end();
  const base = new URL(url);
  const pools: mysql.Pool[] = [];
  const connection = {
    host: base.hostname,
    port: Number(base.port || 3306),
    user: decodeURIComponent(base.username || 'root'),
    password: decodeURIComponent(base.password),
    database,
  };
  const newPool = (connections = size) => {
    const pool = mysql.createPool({ ...connection, connectionLimit: connections });
    pools.push(pool);
    return pool;
  };
  const pool = newPool();
  return {
    pool,
    database,
    connection,
    newPool,
    async close() {
      await pool.query(`DROP DATABASE \`${database}\``).catch(() => undefined);
      await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
      await stopServer?.();
    },
  };
}
