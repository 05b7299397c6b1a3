/**
 * Hot-row throughput: every strategy decrementing one row, at 1, 16 and 64
 * concurrent clients, beside bare `UPDATE t SET v = v - 1 WHERE id = 1`
 * statements on the same pool. Reports ratios to that baseline, measured in
 * the same rounds as the strategies.
 *
 * With `--database mysql://...` the same table is filled on MySQL / MariaDB
 * (`raceguard/mysql`; the advisory lock is `GET_LOCK`, on a pool of its own).
 *
 * On PostgreSQL, then the hot-row combiner (`createCombiner`): strategy
 * `combined` at 64 clients in one process and 16 clients in each of 4
 * processes (`--combined 64x1,16x4`), plain (against bare `UPDATE`
 * statements at the same clients and processes) and durable (one order row
 * per granted request, against a per-request transaction doing the same
 * `UPDATE` and `INSERT`). `--combined-only` skips the other strategies.
 *
 *   npm run bench [-- --duration-ms 1000 --rounds 3 --clients 1,16,64 --json
 *                     --database postgres://... | mysql://...
 *                     --combined 64x1,16x4 --combined-only]
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Locker } from '../packages/raceguard/dist/index.js';
import * as my from '../packages/raceguard/dist/mysql/index.js';
import { driveRow, ROW_STRATEGIES, rowOperations } from '../packages/cli/dist/lab/row-workload.js';
import { mysqlDb, postgresDb, type LabPool } from '../packages/cli/dist/lab/sql.js';
import { createScratchSchema } from '../packages/raceguard/dist/testing/index.js';
import {
  benchPostgres,
  describeServer,
  fitClients,
  serverSettings,
  type ServerSettings,
} from './server.js';
import { median } from './stats.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '1,16,64' },
    database: { type: 'string' },
    combined: { type: 'string', default: '64x1,16x4' },
    'combined-only': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
let clientCounts = args.clients.split(',').map(Number);
let combinedShapes = args.combined.split(',').map((shape) => {
  const [clients, processes] = shape.split('x').map(Number);
  return { clients: clients ?? Number.NaN, processes: processes ?? Number.NaN };
});
if (
  combinedShapes.some(
    (s) =>
      !Number.isSafeInteger(s.clients) ||
      s.clients < 1 ||
      !Number.isSafeInteger(s.processes) ||
      s.processes < 1,
  ) ||
  !(durationMs > 0) ||
  !Number.isSafeInteger(rounds) ||
  rounds < 1 ||
  clientCounts.some((n) => !Number.isSafeInteger(n) || n < 1)
) {
  process.stderr.write(
    'usage: hot-row [--duration-ms N] [--rounds N] [--clients 1,16,64] [--database URL] [--combined 64x1,16x4] [--combined-only] [--json]\n',
  );
  process.exit(2);
}

type Op = () => Promise<unknown>;
const HOT = { id: 1 };
const TARGET = { table: 'hot', key: HOT, column: 'v', versionColumn: 'version' } as const;

/** The closed loop of `raceguard advise` (driveRow), over one operation. */
async function measure(op: Op, clients: number): Promise<number> {
  const run = await driveRow(
    {
      take: async () => {
        await op();
        return true;
      },
      read: op,
      close: () => Promise.resolve(),
    },
    { clients, durationMs },
  );
  if (run.errors > 0) throw new Error(`${run.errors} operations failed: ${run.firstError}`);
  return run.opsPerSec;
}

/** The strategies of `raceguard advise` on one pool (the same row workload). */
function strategiesOn(
  pool: LabPool,
  resources: { advisoryLock?: Locker } = {},
): Record<string, Op> {
  return Object.fromEntries(
    ROW_STRATEGIES.filter((s) => s !== 'unsafe' && s !== 'combined').map((strategy) => {
      const operations = rowOperations(strategy, pool, TARGET, resources);
      return [strategy, () => operations.take(1)];
    }),
  );
}

interface Subject {
  readonly settings?: ServerSettings;
  readonly label: string;
  /** PostgreSQL only: where worker processes of the combined benchmark connect. */
  readonly postgres?: { readonly url: string; readonly schema: string };
  readonly baseline: Op;
  readonly strategies: Record<string, Op>;
  /** Waits until the main pool holds no connection (PostgreSQL: before the combiner's workers). */
  quiesce?(): Promise<void>;
  close(): Promise<void>;
}

const TABLE =
  'CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL, version int NOT NULL DEFAULT 0)';

/** What was reduced to fit the server's free connection slots. */
const reductions: string[] = [];

async function postgresSubject(): Promise<Subject> {
  const server = await benchPostgres(args.database);
  const settings = await serverSettings(server);
  // Kept aside: the admin connection and the one the workers' start needs.
  const fitted = fitClients(clientCounts, settings.free, 2);
  clientCounts = fitted.counts;
  if (fitted.reduced !== undefined) reductions.push(fitted.reduced);
  // The combiner's workers run after the main pool has let its idle connections go.
  const room = settings.free - 2;
  combinedShapes = combinedShapes.map((shape) => {
    const fits = Math.max(1, Math.floor(room / shape.processes));
    if (fits >= shape.clients) return shape;
    reductions.push(
      `combined ${shape.clients}x${shape.processes}: ${fits} client(s) per process (${room} slots free)`,
    );
    return { clients: fits, processes: shape.processes };
  });
  const admin = new pg.Pool({ connectionString: server.url, max: 1 });
  admin.on('error', () => undefined);
  const schema = await createScratchSchema(admin, 'raceguard_bench');
  const pool = new pg.Pool({
    connectionString: server.url,
    max: Math.max(...clientCounts),
    options: schema.connectionOptions,
    // Idle connections go soon: the combiner's workers need the slots next.
    idleTimeoutMillis: 100,
  });
  pool.on('error', () => undefined);
  await pool.query(TABLE);
  await pool.query('INSERT INTO hot (id, v) VALUES (1, 1000000000000)');
  await pool.query(
    'CREATE TABLE hot_orders (id bigserial PRIMARY KEY, row_id int NOT NULL, request text NOT NULL)',
  );
  return {
    label: describeServer(settings),
    settings,
    postgres: { url: server.url, schema: schema.name },
    baseline: () => pool.query('UPDATE hot SET v = v - 1 WHERE id = 1'),
    strategies: strategiesOn(postgresDb(pool)),
    async quiesce() {
      for (let waited = 0; pool.totalCount > 0 && waited < 5000; waited += 50)
        await new Promise((resolve) => setTimeout(resolve, 50));
    },
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
  return {
    label: `MySQL / MariaDB: ${base.host}`,
    baseline: () => pool.query('UPDATE hot SET v = v - 1 WHERE id = 1'),
    strategies: strategiesOn(mysqlDb(pool), { advisoryLock: locks }),
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
/** A row of the combined table. */
interface CombinedRow {
  readonly strategy: 'combined';
  readonly clients: number;
  readonly processes: number;
  readonly durable: boolean;
  readonly opsPerSec: number;
  readonly ratioToBaseline: number;
  /** The baseline's throughput at the same clients and processes: the floor beside the result. */
  readonly baselineOpsPerSec: number;
  readonly p99Ms: number;
  readonly baselineP99Ms: number;
  /** Mean requests per statement. */
  readonly meanBatch: number;
}
const combinedResults: CombinedRow[] = [];

/** Run `processes` workers at once, each with `clients` callers; sum their operations. */
async function runWorkers(
  where: { readonly url: string; readonly schema: string },
  mode: 'combined' | 'baseline',
  durable: boolean,
  clients: number,
  processes: number,
): Promise<{ opsPerSec: number; p99Ms: number; batches: number; ops: number }> {
  const startAt = Date.now() + 1500 + processes * 300;
  const outputs = await Promise.all(
    Array.from(
      { length: processes },
      () =>
        new Promise<{ ops: number; p99Ms: number; batches: number }>((resolve, reject) => {
          const child = spawn(
            process.execPath,
            [
              '--import',
              'tsx',
              'bench/hot-row-worker.ts',
              where.url,
              where.schema,
              mode,
              durable ? 'durable' : 'plain',
              String(clients),
              String(durationMs),
              String(startAt),
            ],
            { stdio: ['ignore', 'pipe', 'inherit'] },
          );
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
          child.on('error', reject);
          child.on('exit', (code) =>
            code === 0
              ? resolve(JSON.parse(out) as { ops: number; p99Ms: number; batches: number })
              : reject(new Error(`worker exited ${code}`)),
          );
        }),
    ),
  );
  const ops = outputs.reduce((sum, o) => sum + o.ops, 0);
  return {
    ops,
    opsPerSec: (ops * 1000) / durationMs,
    p99Ms: Math.max(...outputs.map((o) => o.p99Ms)),
    batches: outputs.reduce((sum, o) => sum + o.batches, 0),
  };
}

try {
  for (const clients of args['combined-only'] ? [] : clientCounts) {
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
  const where = subject.postgres;
  await subject.quiesce?.();
  for (const durable of where === undefined ? [] : [false, true]) {
    for (const { clients, processes } of combinedShapes) {
      const runs = {
        combined: [] as Awaited<ReturnType<typeof runWorkers>>[],
        baseline: [] as Awaited<ReturnType<typeof runWorkers>>[],
      };
      for (let round = 0; round < rounds; round++) {
        for (const mode of ['baseline', 'combined'] as const) {
          if (!args.json)
            process.stderr.write(
              `  ${mode}, ${durable ? 'durable' : 'plain'}, ${processes} x ${clients} client(s), round ${round + 1}...\n`,
            );
          runs[mode].push(
            await runWorkers(where as NonNullable<typeof where>, mode, durable, clients, processes),
          );
        }
      }
      const pick = (list: Awaited<ReturnType<typeof runWorkers>>[]) =>
        [...list].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(list.length / 2)] as Awaited<
          ReturnType<typeof runWorkers>
        >;
      const combined = pick(runs.combined);
      const base = pick(runs.baseline);
      combinedResults.push({
        strategy: 'combined',
        clients: clients * processes,
        processes,
        durable,
        opsPerSec: Math.round(combined.opsPerSec),
        ratioToBaseline: Number((combined.opsPerSec / base.opsPerSec).toFixed(2)),
        baselineOpsPerSec: Math.round(base.opsPerSec),
        p99Ms: Number(combined.p99Ms.toFixed(2)),
        baselineP99Ms: Number(base.p99Ms.toFixed(2)),
        meanBatch: Number((combined.ops / Math.max(1, combined.batches)).toFixed(1)),
      });
    }
  }
} finally {
  await subject.close();
}

if (args.json) {
  process.stdout.write(
    `${JSON.stringify(
      {
        server: subject.settings ?? subject.label,
        reduced: reductions,
        results: [...results, ...combinedResults],
      },
      null,
      2,
    )}\n`,
  );
} else {
  const { renderTable } = await import('../packages/cli/src/commands/table.js');
  process.stdout.write(
    `${renderTable(
      ['strategy', 'clients', 'ops/s', 'x baseline'],
      results.map((r) => [r.strategy, r.clients, r.opsPerSec, r.ratioToBaseline.toFixed(2)]),
    )}\n\n${subject.label}; baseline (the floor): bare UPDATE statements on the same pool; median of ${rounds} round(s) of ${durationMs} ms\n${reductions.map((line) => `reduced: ${line}\n`).join('')}`,
  );
  if (combinedResults.length > 0) {
    process.stdout.write(
      `\n${renderTable(
        [
          'strategy',
          'mode',
          'clients',
          'processes',
          'ops/s',
          'baseline ops/s',
          'x baseline',
          'p99 ms',
          'baseline p99 ms',
          'mean batch',
        ],
        combinedResults.map((r) => [
          r.strategy,
          r.durable ? 'durable' : 'plain',
          r.clients,
          r.processes,
          r.opsPerSec,
          r.baselineOpsPerSec,
          r.ratioToBaseline.toFixed(1),
          r.p99Ms.toFixed(1),
          r.baselineP99Ms.toFixed(1),
          r.meanBatch,
        ]),
      )}\n\nbaseline (the floor) at the same clients and processes: plain, bare UPDATE statements; durable, a transaction per request doing the UPDATE and the order INSERT; median of ${rounds} round(s) of ${durationMs} ms\n`,
    );
  }
}
