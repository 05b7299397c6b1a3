/**
 * Hot-row throughput: every strategy decrementing one row, at 1, 16 and 64
 * concurrent clients, beside bare `UPDATE t SET v = v - 1 WHERE id = 1`
 * statements on the same pool. Reports ratios to that baseline, measured in
 * the same rounds as the strategies.
 *
 * With `--database mysql://...` the same table is filled on MySQL / MariaDB
 * (`raceguard/mysql`; the advisory lock is `GET_LOCK`, on a pool of its own).
 *
 *   npm run bench [-- --duration-ms 1000 --rounds 3 --clients 1,16,64 --json
 *                     --database postgres://... | mysql://...]
 */
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withLock } from '../packages/raceguard/dist/index.js';
import * as my from '../packages/raceguard/dist/mysql/index.js';
import {
  atomicDecrement,
  lockRows,
  optimisticUpdate,
  transaction,
  withAdvisoryLock,
} from '../packages/raceguard/dist/postgres/index.js';
import { createScratchSchema, usePostgres } from '../packages/raceguard/dist/testing/index.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '1,16,64' },
    database: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
const clientCounts = args.clients.split(',').map(Number);
if (
  !(durationMs > 0) ||
  !Number.isSafeInteger(rounds) ||
  rounds < 1 ||
  clientCounts.some((n) => !Number.isSafeInteger(n) || n < 1)
) {
  process.stderr.write(
    'usage: hot-row [--duration-ms N] [--rounds N] [--clients 1,16,64] [--database URL] [--json]\n',
  );
  process.exit(2);
}

type PgOp = (pool: pg.Pool) => Promise<unknown>;
type Op = () => Promise<unknown>;
const HOT = { id: 1 };
const pgStrategies: Record<string, PgOp> = {
  atomic: (pool) => atomicDecrement(pool, { table: 'hot', key: HOT, column: 'v', amount: 1 }),
  pessimistic: (pool) =>
    transaction(pool, async (tx) => {
      const [row] = await lockRows(tx, { table: 'hot', where: HOT });
      await tx.query('UPDATE hot SET v = $1 WHERE id = 1', [Number(row?.v) - 1]);
    }),
  optimistic: (pool) =>
    optimisticUpdate(pool, {
      table: 'hot',
      key: HOT,
      maxAttempts: 1000,
      maxDelayMs: 20,
      update: (row) => ({ v: Number(row.v) - 1 }),
    }),
  serializable: (pool) =>
    transaction(
      pool,
      async (tx) => {
        const { rows } = await tx.query('SELECT v FROM hot WHERE id = 1');
        await tx.query('UPDATE hot SET v = $1 WHERE id = 1', [Number(rows[0]?.v) - 1]);
      },
      { isolation: 'serializable', maxAttempts: 1000, maxDelayMs: 20 },
    ),
  'advisory-lock': (pool) =>
    withAdvisoryLock(pool, 'hot:1', async (tx) => {
      const { rows } = await tx.query('SELECT v FROM hot WHERE id = 1');
      await tx.query('UPDATE hot SET v = $1 WHERE id = 1', [Number(rows[0]?.v) - 1]);
    }),
};
const pgBaseline: PgOp = (pool) => pool.query('UPDATE hot SET v = v - 1 WHERE id = 1');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

async function measure(op: Op, clients: number): Promise<number> {
  const until = performance.now() + durationMs;
  let ops = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) {
        await op();
        ops++;
      }
    }),
  );
  return (ops * 1000) / (performance.now() - started);
}

interface Subject {
  readonly label: string;
  readonly baseline: Op;
  readonly strategies: Record<string, Op>;
  close(): Promise<void>;
}

const TABLE =
  'CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL, version int NOT NULL DEFAULT 0)';

async function postgresSubject(): Promise<Subject> {
  const server = await usePostgres(args.database === undefined ? {} : { url: args.database });
  const admin = new pg.Pool({ connectionString: server.url, max: 1 });
  admin.on('error', () => undefined);
  const schema = await createScratchSchema(admin, 'raceguard_bench');
  const pool = new pg.Pool({
    connectionString: server.url,
    max: Math.max(...clientCounts),
    options: schema.connectionOptions,
  });
  pool.on('error', () => undefined);
  await pool.query(TABLE);
  await pool.query('INSERT INTO hot (id, v) VALUES (1, 1000000000000)');
  return {
    label: `PostgreSQL: ${server.embedded ? 'embedded' : 'DATABASE_URL'}`,
    baseline: () => pgBaseline(pool),
    strategies: Object.fromEntries(
      Object.entries(pgStrategies).map(([name, op]) => [name, () => op(pool)]),
    ),
    async close() {
      await pool.end();
      await schema.drop();
      await admin.end();
      await server.stop();
    },
  };
}

async function mysqlSubject(url: string): Promise<Subject> {
  const base = new URL(url);
  const connection = {
    host: base.hostname,
    port: Number(base.port || 3306),
    user: decodeURIComponent(base.username || 'root'),
    password: decodeURIComponent(base.password),
  };
  const database = `rg_bench_${randomBytes(4).toString('hex')}`;
  const admin = await mysql.createConnection(connection);
  await admin.query(`CREATE DATABASE \`${database}\``);
  const size = Math.max(...clientCounts);
  const pool = mysql.createPool({ ...connection, database, connectionLimit: size });
  const lockPool = mysql.createPool({ ...connection, database, connectionLimit: size });
  await pool.query(TABLE);
  await pool.query('INSERT INTO hot (id, v) VALUES (1, 1000000000000)');
  await my.createMysqlLockTables(pool);
  const locks = new my.MysqlAdvisoryLock({ client: lockPool });
  const readThenWrite = async (tx: my.MysqlQueryable) => {
    const [rows] = (await tx.query('SELECT v FROM hot WHERE id = 1')) as [{ v: string }[], unknown];
    await tx.query('UPDATE hot SET v = ? WHERE id = 1', [Number(rows[0]?.v) - 1]);
  };
  return {
    label: `MySQL / MariaDB: ${base.host}`,
    baseline: () => pool.query('UPDATE hot SET v = v - 1 WHERE id = 1'),
    strategies: {
      atomic: () => my.atomicDecrement(pool, { table: 'hot', key: HOT, column: 'v', amount: 1 }),
      pessimistic: () =>
        my.transaction(pool, async (tx) => {
          const [row] = await my.lockRows(tx, { table: 'hot', key: HOT });
          await tx.query('UPDATE hot SET v = ? WHERE id = 1', [Number(row?.v) - 1]);
        }),
      optimistic: () =>
        my.optimisticUpdate(pool, {
          table: 'hot',
          key: HOT,
          maxAttempts: 1000,
          maxDelayMs: 20,
          update: (row) => ({ v: Number(row.v) - 1 }),
        }),
      serializable: () =>
        my.transaction(pool, readThenWrite, {
          isolation: 'serializable',
          maxAttempts: 1000,
          maxDelayMs: 20,
        }),
      'advisory-lock': () => withLock(locks, 'hot:1', () => readThenWrite(pool)),
    },
    async close() {
      await pool.query(`DROP DATABASE \`${database}\``);
      await pool.end();
      await lockPool.end();
      await admin.end();
    },
  };
}

const subject =
  args.database?.startsWith('mysql://') === true
    ? await mysqlSubject(args.database)
    : await postgresSubject();

const results: { strategy: string; clients: number; opsPerSec: number; ratioToBaseline: number }[] =
  [];
try {
  for (const clients of clientCounts) {
    // Open every connection and warm the plans before measuring.
    await Promise.all(Array.from({ length: clients }, () => subject.baseline()));
    // Rounds interleave the baseline with every strategy; the median of each
    // series is reported, so a burst of machine noise moves one sample, not the ratio.
    const samples = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const [name, op] of [
        ['baseline', subject.baseline] as const,
        ...Object.entries(subject.strategies),
      ]) {
        if (!args.json)
          process.stderr.write(`  ${clients} client(s), round ${round + 1}: ${name}...\n`);
        const series = samples.get(name) ?? [];
        series.push(await measure(op, clients));
        samples.set(name, series);
      }
    }
    const base = median(samples.get('baseline') ?? []);
    for (const [strategy, series] of samples) {
      const opsPerSec = median(series);
      results.push({
        strategy,
        clients,
        opsPerSec: Math.round(opsPerSec),
        ratioToBaseline: Number((opsPerSec / base).toFixed(3)),
      });
    }
  }
} finally {
  await subject.close();
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  const { renderTable } = await import('../packages/cli/src/cli/table.js');
  process.stdout.write(
    `${renderTable(
      ['strategy', 'clients', 'ops/s', 'x baseline'],
      results.map((r) => [r.strategy, r.clients, r.opsPerSec, r.ratioToBaseline.toFixed(2)]),
    )}\n\n${subject.label}; baseline (the floor): bare UPDATE statements on the same pool; median of ${rounds} round(s) of ${durationMs} ms\n`,
  );
}
