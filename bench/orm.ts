/**
 * The ORM adapters' cost: raceguard's atomic and optimistic helpers through
 * Kysely, Drizzle, TypeORM and Prisma (its client generated as the tests do), beside the same statements sent by hand
 * through the raw driver (the floor), and each ORM's own floor (the atomic
 * statement by hand through the ORM's raw-SQL path), on PostgreSQL and
 * MariaDB, at 16 clients. Each client works on a row of its own, so the figures measure
 * the adapter's overhead, not contention. Rounds interleave every variant;
 * medians are reported.
 *
 *   npm run bench:orm [-- --duration-ms 1000 --rounds 3 --clients 16 --json
 *                         --database postgres://... --mysql mysql://...]
 */
import 'reflect-metadata';
import { PrismaMariaDb } from '@prisma/adapter-mariadb';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle as drizzleMysql } from 'drizzle-orm/mysql2';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { sql as drizzleSql } from 'drizzle-orm';
import { Kysely, MysqlDialect, PostgresDialect, sql as kyselySql } from 'kysely';
import { createPool as createCallbackPool } from 'mysql2';
import mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { DataSource } from 'typeorm';
import * as drizzleAdapter from '../packages/raceguard/dist/drizzle/index.js';
import * as kyselyAdapter from '../packages/raceguard/dist/kysely/index.js';
import * as prismaAdapter from '../packages/raceguard/dist/prisma/index.js';
import { prismaClientClass } from '../test/helpers/prisma.js';
import * as typeormAdapter from '../packages/raceguard/dist/typeorm/index.js';
import type { OrmHelpers } from '../packages/raceguard/dist/kysely/index.js';
import { mysqlReachable, startMariaDbServer } from '../packages/raceguard/dist/testing/index.js';
import { createScratchSchema } from '../packages/raceguard/dist/testing/index.js';
import { median } from './stats.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '16' },
    mysql: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
const clients = Number(args.clients);
if (!(durationMs > 0) || !Number.isSafeInteger(rounds) || rounds < 1 || !(clients >= 1)) {
  process.stderr.write(
    'usage: orm [--duration-ms N] [--rounds N] [--clients N] [--mysql URL] [--json]\n',
  );
  process.exit(2);
}

/** One operation by client `i` on its own row. */
type Op = (i: number) => Promise<unknown>;
interface Variant {
  readonly orm: string;
  readonly atomic: Op;
  /** Absent for an ORM's own floor, measured on the atomic statement only. */
  readonly optimistic?: Op;
}

const atomicOptions = (i: number) => ({ table: 'hot', key: { id: i }, column: 'v', amount: 1 });
const optimisticOptions = (i: number) => ({
  table: 'hot',
  key: { id: i },
  update: (row: Record<string, unknown>) => ({ v: Number(row.v) - 1 }),
});

/** The four adapters' variants, on the databases each ORM opened. */
function ormVariants(on: {
  readonly kdb: kyselyAdapter.KyselyDatabase;
  readonly ddb: drizzleAdapter.DrizzleDatabase;
  readonly source: typeormAdapter.TypeormDatabase;
  readonly prisma: prismaAdapter.PrismaRawClient;
}): Variant[] {
  const helpers = [
    ['kysely', kyselyAdapter, on.kdb],
    ['drizzle', drizzleAdapter, on.ddb],
    ['typeorm', typeormAdapter, on.source],
    ['prisma', prismaAdapter, on.prisma],
  ] as const;
  return helpers.map(([orm, adapter, db]) => {
    const { atomicDecrement, optimisticUpdate } = adapter as OrmHelpers<typeof db>;
    return {
      orm,
      atomic: (i: number) => atomicDecrement(db, atomicOptions(i)),
      optimistic: (i: number) => optimisticUpdate(db, optimisticOptions(i)),
    };
  });
}

/**
 * Each ORM's own floor: the raw driver's atomic statement by hand through
 * the ORM's own raw-SQL path (Kysely's and Drizzle's `sql` templates,
 * TypeORM's `query`, Prisma's `$queryRawUnsafe` / `$executeRawUnsafe`), so
 * an adapter's ratio to it is what the adapter adds, and the floor's ratio
 * to the raw driver is what the ORM itself costs.
 */
function ormFloors(
  on: {
    readonly kdb: Kysely<Record<string, never>>;
    readonly ddb: { execute(query: ReturnType<typeof drizzleSql>): Promise<unknown> };
    readonly source: DataSource;
    readonly prisma: {
      $queryRawUnsafe(query: string, ...values: unknown[]): Promise<unknown>;
    };
  },
  database: 'postgres' | 'mysql',
): Variant[] {
  // The raw driver's statement, as each ORM takes it.
  const text =
    database === 'postgres'
      ? 'UPDATE hot SET v = v - $1 WHERE id = $2 AND v - $1 >= $3 RETURNING id, v'
      : 'UPDATE hot SET v = LAST_INSERT_ID(v - ?) WHERE id = ? AND v >= ?';
  const values = (i: number) => (database === 'postgres' ? [1, i, 0] : [1, i, 1]);
  return [
    {
      orm: 'kysely (by hand)',
      atomic: (i) =>
        (database === 'postgres'
          ? kyselySql`UPDATE hot SET v = v - ${1} WHERE id = ${i} AND v - ${1} >= ${0} RETURNING id, v`
          : kyselySql`UPDATE hot SET v = LAST_INSERT_ID(v - ${1}) WHERE id = ${i} AND v >= ${1}`
        ).execute(on.kdb),
    },
    {
      orm: 'drizzle (by hand)',
      atomic: (i) =>
        on.ddb.execute(
          database === 'postgres'
            ? drizzleSql`UPDATE hot SET v = v - ${1} WHERE id = ${i} AND v - ${1} >= ${0} RETURNING id, v`
            : drizzleSql`UPDATE hot SET v = LAST_INSERT_ID(v - ${1}) WHERE id = ${i} AND v >= ${1}`,
        ),
    },
    { orm: 'typeorm (by hand)', atomic: (i) => on.source.query(text, values(i)) },
    { orm: 'prisma (by hand)', atomic: (i) => on.prisma.$queryRawUnsafe(text, ...values(i)) },
  ];
}

async function measure(op: Op): Promise<number> {
  const until = performance.now() + durationMs;
  let ops = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      while (performance.now() < until) {
        await op(i + 1);
        ops++;
      }
    }),
  );
  return (ops * 1000) / (performance.now() - started);
}

const TABLE =
  'CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL, version int NOT NULL DEFAULT 0)';
const rows = Array.from({ length: clients }, (_, i) => `(${i + 1}, 1000000000000)`).join(', ');

async function postgresVariants(): Promise<{
  variants: Variant[];
  close: () => Promise<void>;
  label: string;
}> {
  const server = await benchPostgres();
  process.stderr.write(`${describeServer(await serverSettings(server))}
`);
  const admin = new pg.Pool({ connectionString: server.url, max: 1 });
  admin.on('error', () => undefined);
  const schema = await createScratchSchema(admin, 'raceguard_bench_orm');
  const newPool = () => {
    const pool = new pg.Pool({
      connectionString: server.url,
      max: clients,
      options: schema.connectionOptions,
    });
    pool.on('error', () => undefined);
    return pool;
  };
  const raw = newPool();
  await raw.query(TABLE);
  await raw.query(`INSERT INTO hot (id, v) VALUES ${rows}`);
  const kdb = new Kysely<Record<string, never>>({
    dialect: new PostgresDialect({ pool: newPool() }),
  });
  const drizzlePool = newPool();
  const ddb = drizzlePg({ client: drizzlePool });
  const source = new DataSource({
    type: 'postgres',
    url: server.url,
    extra: { options: schema.connectionOptions, max: clients },
  });
  await source.initialize();
  const prisma = new (await prismaClientClass('postgresql'))({
    adapter: new PrismaPg(
      { connectionString: server.url, options: schema.connectionOptions, max: clients },
      { schema: schema.name },
    ),
  });
  const variants: Variant[] = [
    {
      orm: 'raw driver (by hand)',
      atomic: (i) =>
        raw.query('UPDATE hot SET v = v - $1 WHERE id = $2 AND v - $1 >= $3 RETURNING id, v', [
          1,
          i,
          0,
        ]),
      optimistic: async (i) => {
        for (;;) {
          const read = await raw.query<{ v: string; version: number }>(
            'SELECT * FROM hot WHERE id = $1',
            [i],
          );
          const row = read.rows[0] as { v: string; version: number };
          const written = await raw.query(
            'UPDATE hot SET v = $1, version = version + 1 WHERE id = $2 AND version = $3 RETURNING *',
            [Number(row.v) - 1, i, row.version],
          );
          if (written.rowCount === 1) return;
        }
      },
    },
    ...ormVariants({ kdb, ddb, source, prisma }),
    ...ormFloors({ kdb, ddb, source, prisma }, 'postgres'),
  ];
  return {
    variants,
    label: `PostgreSQL (${server.embedded ? 'embedded' : 'DATABASE_URL'})`,
    close: async () => {
      await prisma.$disconnect();
      await kdb.destroy();
      await drizzlePool.end();
      await source.destroy();
      await raw.end();
      await schema.drop();
      await admin.end();
      await server.stop();
    },
  };
}

async function mysqlVariants(): Promise<{
  variants: Variant[];
  close: () => Promise<void>;
  label: string;
}> {
  let url = args.mysql ?? process.env.MYSQL_URL;
  let stop: (() => Promise<void>) | undefined;
  if (url === undefined) {
    if (await mysqlReachable('mysql://root@127.0.0.1:3306/test'))
      url = 'mysql://root@127.0.0.1:3306/test';
    else {
      const server = await startMariaDbServer();
      url = server.url;
      stop = () => server.stop();
    }
  }
  const base = new URL(url);
  const database = `rg_bench_${randomBytes(4).toString('hex')}`;
  const connection = {
    host: base.hostname,
    port: Number(base.port || 3306),
    user: decodeURIComponent(base.username || 'root'),
    password: decodeURIComponent(base.password),
  };
  const admin = await mysql.createConnection(connection);
  await admin.query(`CREATE DATABASE \`${database}\``);
  const options = { ...connection, database, connectionLimit: clients };
  const raw = mysql.createPool(options);
  await raw.query(TABLE);
  await raw.query(`INSERT INTO hot (id, v) VALUES ${rows}`);
  const callbackPool = createCallbackPool(options);
  const kdb = new Kysely<Record<string, never>>({
    dialect: new MysqlDialect({ pool: callbackPool as never }),
  });
  const drizzlePool = mysql.createPool(options);
  const ddb = drizzleMysql({ client: drizzlePool });
  const source = new DataSource({
    type: 'mariadb',
    ...connection,
    username: connection.user,
    database,
    extra: { connectionLimit: clients },
  });
  await source.initialize();
  const prisma = new (await prismaClientClass('mysql'))({
    adapter: new PrismaMariaDb({ ...connection, database, connectionLimit: clients }),
  });
  const variants: Variant[] = [
    {
      orm: 'raw driver (by hand)',
      atomic: (i) =>
        raw.query('UPDATE hot SET v = LAST_INSERT_ID(v - ?) WHERE id = ? AND v >= ?', [1, i, 1]),
      optimistic: async (i) => {
        for (;;) {
          const [[row]] = (await raw.query(
            'SELECT *, version AS raceguard_version FROM hot WHERE id = ?',
            [i],
          )) as unknown as [[Record<string, unknown>]];
          const [header] = (await raw.query(
            'UPDATE hot SET v = ?, version = version + 1 WHERE id = ? AND version = ?',
            [Number(row.v) - 1, i, String(row.version)],
          )) as unknown as [{ changedRows: number }];
          if (header.changedRows === 1) return;
        }
      },
    },
    ...ormVariants({ kdb, ddb, source, prisma }),
    ...ormFloors({ kdb, ddb, source, prisma }, 'mysql'),
  ];
  return {
    variants,
    label: 'MariaDB',
    close: async () => {
      await prisma.$disconnect();
      await kdb.destroy();
      await drizzlePool.end();
      await source.destroy();
      await raw.end();
      await admin.query(`DROP DATABASE \`${database}\``);
      await admin.end();
      await stop?.();
    },
  };
}

interface Result {
  readonly database: string;
  readonly orm: string;
  readonly strategy: 'atomic' | 'optimistic';
  readonly clients: number;
  readonly opsPerSec: number;
  readonly ratioToRawDriver: number;
}
const results: Result[] = [];
const labels: string[] = [];
for (const open of [postgresVariants, mysqlVariants]) {
  const { variants, close, label } = await open();
  labels.push(label);
  try {
    for (const strategy of ['atomic', 'optimistic'] as const) {
      const measured = variants.filter((v) => v[strategy] !== undefined);
      for (const v of measured) await measure(v[strategy] as Op); // connections open, plans warm
      const samples = new Map<string, number[]>();
      for (let round = 0; round < rounds; round++) {
        for (const v of measured) {
          if (!args.json)
            process.stderr.write(`  ${label}, ${strategy}, round ${round + 1}: ${v.orm}...\n`);
          samples.set(v.orm, [...(samples.get(v.orm) ?? []), await measure(v[strategy] as Op)]);
        }
      }
      const floor = median(samples.get('raw driver (by hand)') ?? []);
      for (const [orm, series] of samples) {
        const opsPerSec = median(series);
        results.push({
          database: label.split(' ')[0] as string,
          orm,
          strategy,
          clients,
          opsPerSec: Math.round(opsPerSec),
          ratioToRawDriver: Number((opsPerSec / floor).toFixed(3)),
        });
      }
    }
  } finally {
    await close();
  }
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  const { renderTable } = await import('../packages/cli/src/commands/table.js');
  process.stdout.write(
    `${renderTable(
      ['database', 'orm', 'strategy', 'clients', 'ops/s', 'x raw driver'],
      results.map((r) => [
        r.database,
        r.orm,
        r.strategy,
        r.clients,
        r.opsPerSec,
        r.ratioToRawDriver.toFixed(2),
      ]),
    )}\n\n${labels.join('; ')}; median of ${rounds} round(s) of ${durationMs} ms; floor: the same statements by hand on the raw driver\n`,
  );
}
