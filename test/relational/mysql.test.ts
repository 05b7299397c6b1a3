/** The relational contract on MariaDB: raw `mysql2`, Kysely, Drizzle and TypeORM. */
import 'reflect-metadata';
import { PrismaMariaDb } from '@prisma/adapter-mariadb';
import { drizzle } from 'drizzle-orm/mysql2';
import { Kysely, MysqlDialect } from 'kysely';
import { createPool } from 'mysql2';
import { after, before } from 'node:test';
import { DataSource } from 'typeorm';
import * as drizzleAdapter from '../../packages/raceguard/src/drizzle/index.js';
import * as kysely from '../../packages/raceguard/src/kysely/index.js';
import * as my from '../../packages/raceguard/src/mysql/index.js';
import * as prismaAdapter from '../../packages/raceguard/src/prisma/index.js';
import { prismaClientClass, type TestPrismaClient } from '../helpers/prisma.js';
import * as typeorm from '../../packages/raceguard/src/typeorm/index.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';
import { adapterSubject, relationalContract, runOn, type RelationalSubject } from './contract.js';

let db: TestMysql;
let kdb: Kysely<Record<string, never>>;
let source: DataSource;
let prisma: TestPrismaClient;
const subjects = new Map<string, RelationalSubject>();

before(async () => {
  db = await openTestMysql(10);
  const pool = db.pool;
  subjects.set('mysql2', {
    name: 'mysql2',
    dialect: 'mysql',
    sql: (text, values) => runOn({ dialect: 'mysql', db: pool }, text, values),
    atomicDecrement: (o) => my.atomicDecrement(pool, o),
    atomicIncrement: (o) => my.atomicIncrement(pool, o),
    compareAndSet: async (o) => ({ applied: (await my.compareAndSet(pool, o)).applied }),
    optimisticUpdate: (o) => my.optimisticUpdate(pool, o),
    versionedRows: (o) => my.versionedRows(pool, o),
    transaction: (fn, options) => {
      let attempt = 0;
      return my.transaction(
        pool,
        (tx) => {
          attempt += 1;
          return fn({
            attempt,
            lockRows: (o) => my.lockRows(tx, o),
            sql: (text, values) => runOn({ dialect: 'mysql', db: tx }, text, values),
          });
        },
        options,
      );
    },
  });

  kdb = new Kysely({
    dialect: new MysqlDialect({
      // mysql2's callback-pool types and Kysely 0.27's structural ones disagree on overloads only.
      pool: createPool({ ...db.connection, connectionLimit: 10 }) as never,
    }),
  });
  subjects.set('kysely', adapterSubject('kysely', 'mysql', kysely, kdb, kysely.kyselyTarget));

  const ddb = drizzle({ client: db.newPool(10) });
  subjects.set(
    'drizzle',
    adapterSubject<typeof ddb, drizzleAdapter.DrizzleDatabase>(
      'drizzle',
      'mysql',
      drizzleAdapter,
      ddb,
      drizzleAdapter.drizzleTarget,
    ),
  );

  source = new DataSource({
    type: 'mariadb',
    host: db.connection.host,
    port: db.connection.port,
    username: db.connection.user,
    password: db.connection.password,
    database: db.connection.database,
    extra: { connectionLimit: 10 },
  });
  await source.initialize();
  subjects.set(
    'typeorm',
    adapterSubject('typeorm', 'mysql', typeorm, source, typeorm.typeormTarget),
  );

  const PrismaClient = await prismaClientClass('mysql');
  prisma = new PrismaClient({
    adapter: new PrismaMariaDb({ ...db.connection, connectionLimit: 10 }),
  });
  subjects.set(
    'prisma',
    adapterSubject<TestPrismaClient, TestPrismaClient>(
      'prisma',
      'mysql',
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
relationalContract('raceguard/mysql on mysql2', subject('mysql2'));
relationalContract('raceguard/kysely on MariaDB', subject('kysely'));
relationalContract('raceguard/drizzle on MariaDB', subject('drizzle'));
relationalContract('raceguard/typeorm on MariaDB', subject('typeorm'));
relationalContract('raceguard/prisma on MariaDB', subject('prisma'));
