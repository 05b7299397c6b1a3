/** The relational contract on PostgreSQL: raw `pg`, Kysely, Drizzle and TypeORM. */
import 'reflect-metadata';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { Kysely, PostgresDialect } from 'kysely';
import { after, before } from 'node:test';
import { DataSource } from 'typeorm';
import * as kysely from '../../packages/raceguard/src/kysely/index.js';
import * as drizzleAdapter from '../../packages/raceguard/src/drizzle/index.js';
import * as typeorm from '../../packages/raceguard/src/typeorm/index.js';
import * as pg from '../../packages/raceguard/src/postgres/index.js';
import * as prismaAdapter from '../../packages/raceguard/src/prisma/index.js';
import { prismaClientClass, type TestPrismaClient } from '../helpers/prisma.js';
import type { SqlTarget } from '../../packages/raceguard/src/orm/relational.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { adapterSubject, relationalContract, runOn, type RelationalSubject } from './contract.js';

let db: TestDatabase;
let kdb: Kysely<Record<string, never>>;
let source: DataSource;
let prisma: TestPrismaClient;
const subjects = new Map<string, RelationalSubject>();

before(async () => {
  db = await openTestDatabase(10);
  const pool = db.pool;
  const raw: SqlTarget = {
    dialect: 'postgres',
    db: {
      query: pool.query.bind(pool),
      attempt: 1,
      isolation: 'read committed',
      signal: undefined,
    } as never,
  };
  subjects.set('pg', {
    name: 'pg',
    dialect: 'postgres',
    sql: (text, values) => runOn(raw, text, values),
    atomicDecrement: (o) => pg.atomicDecrement(pool, o),
    atomicIncrement: (o) => pg.atomicIncrement(pool, o),
    compareAndSet: async (o) => ({ applied: (await pg.compareAndSet(pool, o)).applied }),
    optimisticUpdate: (o) => pg.optimisticUpdate(pool, o),
    versionedRows: (o) => pg.versionedRows(pool, o),
    transaction: (fn, options) =>
      pg.transaction(
        pool,
        (tx) =>
          fn({
            attempt: tx.attempt,
            lockRows: ({ key, ...rest }) => pg.lockRows(tx, { ...rest, key: key }),
            sql: (text, values) => runOn({ dialect: 'postgres', db: tx }, text, values),
          }),
        options as pg.TransactionOptions,
      ),
  });

  kdb = new Kysely({ dialect: new PostgresDialect({ pool: db.newPool(10) }) });
  subjects.set('kysely', adapterSubject('kysely', 'postgres', kysely, kdb, kysely.kyselyTarget));

  const ddb = drizzle({ client: db.newPool(10) });
  subjects.set(
    'drizzle',
    adapterSubject<typeof ddb, drizzleAdapter.DrizzleDatabase>(
      'drizzle',
      'postgres',
      drizzleAdapter,
      ddb,
      drizzleAdapter.drizzleTarget,
    ),
  );

  source = new DataSource({
    type: 'postgres',
    url: db.url,
    extra: { options: `-c search_path=${db.schema}`, max: 10 },
  });
  await source.initialize();
  subjects.set(
    'typeorm',
    adapterSubject('typeorm', 'postgres', typeorm, source, typeorm.typeormTarget),
  );

  const PrismaClient = await prismaClientClass('postgresql');
  prisma = new PrismaClient({
    adapter: new PrismaPg(
      { connectionString: db.url, options: `-c search_path=${db.schema}`, max: 10 },
      { schema: db.schema },
    ),
  });
  subjects.set(
    'prisma',
    adapterSubject<TestPrismaClient, TestPrismaClient>(
      'prisma',
      'postgres',
      prismaAdapter,
      prisma,
      prismaAdapter.prismaTarget,
    ),
  );
});

after(async () => {
  await prisma?.$disconnect();
  await kdb?.destroy();
  await source?.destroy();
  await db?.close();
});

const subject = (name: string) => () => {
  const s = subjects.get(name);
  if (s === undefined) throw new Error(`no subject ${name}`);
  return s;
};
relationalContract('raceguard/postgres on pg', subject('pg'));
relationalContract('raceguard/kysely on PostgreSQL', subject('kysely'));
relationalContract('raceguard/drizzle on PostgreSQL', subject('drizzle'));
relationalContract('raceguard/typeorm on PostgreSQL', subject('typeorm'));
relationalContract('raceguard/prisma on PostgreSQL', subject('prisma'));
