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
import { relationalContract, runOn, type RelationalSubject } from './contract.js';

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
    transaction: (fn, options) =>
      pg.transaction(
        pool,
        (tx) =>
          fn({
            attempt: tx.attempt,
            lockRows: ({ key, ...rest }) => pg.lockRows(tx, { ...rest, where: key }),
            sql: (text, values) => runOn({ dialect: 'postgres', db: tx }, text, values),
          }),
        options as pg.TransactionOptions,
      ),
  });

  kdb = new Kysely({ dialect: new PostgresDialect({ pool: db.newPool(10) }) });
  subjects.set('kysely', {
    name: 'kysely',
    dialect: 'postgres',
    sql: (text, values) => runOn(kysely.kyselyTarget(kdb), text, values),
    atomicDecrement: (o) => kysely.atomicDecrement(kdb, o),
    atomicIncrement: (o) => kysely.atomicIncrement(kdb, o),
    compareAndSet: (o) => kysely.compareAndSet(kdb, o),
    optimisticUpdate: (o) => kysely.optimisticUpdate(kdb, o),
    transaction: (fn, options) =>
      kysely.transaction(
        kdb,
        (trx, { attempt }) =>
          fn({
            attempt,
            lockRows: (o) => kysely.lockRows(trx, o),
            sql: (text, values) => runOn(kysely.kyselyTarget(trx), text, values),
          }),
        options,
      ),
  });

  const ddb = drizzle({ client: db.newPool(10) });
  subjects.set('drizzle', {
    name: 'drizzle',
    dialect: 'postgres',
    sql: (text, values) => runOn(drizzleAdapter.drizzleTarget(ddb), text, values),
    atomicDecrement: (o) => drizzleAdapter.atomicDecrement(ddb, o),
    atomicIncrement: (o) => drizzleAdapter.atomicIncrement(ddb, o),
    compareAndSet: (o) => drizzleAdapter.compareAndSet(ddb, o),
    optimisticUpdate: (o) => drizzleAdapter.optimisticUpdate(ddb, o),
    transaction: (fn, options) =>
      drizzleAdapter.transaction(
        ddb,
        (tx, { attempt }) =>
          fn({
            attempt,
            lockRows: (o) => drizzleAdapter.lockRows(tx, o),
            sql: (text, values) => runOn(drizzleAdapter.drizzleTarget(tx), text, values),
          }),
        options,
      ),
  });

  source = new DataSource({
    type: 'postgres',
    url: db.url,
    extra: { options: `-c search_path=${db.schema}`, max: 10 },
  });
  await source.initialize();
  subjects.set('typeorm', {
    name: 'typeorm',
    dialect: 'postgres',
    sql: (text, values) => runOn(typeorm.typeormTarget(source), text, values),
    atomicDecrement: (o) => typeorm.atomicDecrement(source, o),
    atomicIncrement: (o) => typeorm.atomicIncrement(source, o),
    compareAndSet: (o) => typeorm.compareAndSet(source, o),
    optimisticUpdate: (o) => typeorm.optimisticUpdate(source, o),
    transaction: (fn, options) =>
      typeorm.transaction(
        source,
        (manager, { attempt }) =>
          fn({
            attempt,
            lockRows: (o) => typeorm.lockRows(manager, o),
            sql: (text, values) => runOn(typeorm.typeormTarget(manager), text, values),
          }),
        options,
      ),
  });

  const PrismaClient = await prismaClientClass('postgresql');
  prisma = new PrismaClient({
    adapter: new PrismaPg(
      { connectionString: db.url, options: `-c search_path=${db.schema}`, max: 10 },
      { schema: db.schema },
    ),
  });
  subjects.set('prisma', {
    name: 'prisma',
    dialect: 'postgres',
    sql: (text, values) => runOn(prismaAdapter.prismaTarget(prisma), text, values),
    atomicDecrement: (o) => prismaAdapter.atomicDecrement(prisma, o),
    atomicIncrement: (o) => prismaAdapter.atomicIncrement(prisma, o),
    compareAndSet: (o) => prismaAdapter.compareAndSet(prisma, o),
    optimisticUpdate: (o) => prismaAdapter.optimisticUpdate(prisma, o),
    transaction: (fn, options) =>
      prismaAdapter.transaction(
        prisma,
        (tx, { attempt }) =>
          fn({
            attempt,
            lockRows: (o) => prismaAdapter.lockRows(tx, o),
            sql: (text, values) => runOn(prismaAdapter.prismaTarget(tx), text, values),
          }),
        options,
      ),
  });
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
