/**
 * What is particular to each ORM adapter, beyond the shared relational
 * contract: TypeORM's `saveChecked` for `@VersionColumn` entities, and the
 * adapters' refusals of objects they cannot serve.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { DataSource, EntitySchema } from 'typeorm';
import {
  InvalidArgumentError,
  OptimisticConflictError,
} from '../../packages/raceguard/src/core/errors.js';
import * as drizzleAdapter from '../../packages/raceguard/src/drizzle/index.js';
import * as kysely from '../../packages/raceguard/src/kysely/index.js';
import * as prismaAdapter from '../../packages/raceguard/src/prisma/index.js';
import * as typeorm from '../../packages/raceguard/src/typeorm/index.js';
import { prismaClientClass } from '../helpers/prisma.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';

interface Doc {
  id: number;
  title: string;
  version?: number;
}

const Docs = new EntitySchema<Doc>({
  name: 'Doc',
  tableName: 'orm_docs',
  columns: {
    id: { type: Number, primary: true },
    title: { type: String },
    version: { type: Number, version: true },
  },
});

describe('ORM adapters', () => {
  let db: TestDatabase;
  let source: DataSource;
  before(async () => {
    db = await openTestDatabase(6);
    source = new DataSource({
      type: 'postgres',
      url: db.url,
      entities: [Docs],
      extra: { options: `-c search_path=${db.schema}`, max: 20 },
    });
    await source.initialize();
    await db.pool.query(
      'CREATE TABLE orm_docs (id int PRIMARY KEY, title text NOT NULL, version int NOT NULL)',
    );
  });
  after(async () => {
    await source?.destroy();
    await db?.close();
  });

  it("TypeORM's own save() lets the second of two editors erase the first's change (control); saveChecked refuses it with the current row", async () => {
    const docs = source.getRepository(Docs);
    await docs.save({ id: 1, title: 'draft' });
    const alice = await docs.findOneByOrFail({ id: 1 });
    const bob = await docs.findOneByOrFail({ id: 1 });
    alice.title = 'alice';
    bob.title = 'bob';
    await docs.save(alice);
    await docs.save(bob); // TypeORM adds no WHERE version = ?: Alice's change silently disappears
    assert.equal((await docs.findOneByOrFail({ id: 1 })).title, 'bob');

    await docs.save({ id: 2, title: 'draft' });
    const carol = await docs.findOneByOrFail({ id: 2 });
    const dave = await docs.findOneByOrFail({ id: 2 });
    carol.title = 'carol';
    dave.title = 'dave';
    await typeorm.saveChecked(docs, carol);
    assert.equal(carol.version, 2, 'the entity carries its new version');
    const conflict = await typeorm.saveChecked(docs, dave).then(
      () => assert.fail('expected a conflict'),
      (error: unknown) => error,
    );
    assert.ok(conflict instanceof OptimisticConflictError);
    assert.equal((conflict.current as Doc | undefined)?.title, 'carol');
    assert.equal((await docs.findOneByOrFail({ id: 2 })).title, 'carol');
    // Carol saves again from her fresh version: fine.
    carol.title = 'carol 2';
    await typeorm.saveChecked(docs, carol);
    assert.deepEqual(await docs.findOneByOrFail({ id: 2 }), {
      id: 2,
      title: 'carol 2',
      version: 3,
    });
  });

  it('saveChecked: 100 concurrent saves of copies loaded at the same version: exactly one lands', async () => {
    const docs = source.getRepository(Docs);
    await docs.save({ id: 3, title: 'v1' });
    const copies = await Promise.all(
      Array.from({ length: 100 }, () => docs.findOneByOrFail({ id: 3 })),
    );
    const outcomes = await Promise.allSettled(
      copies.map((copy, i) => typeorm.saveChecked(docs, { ...copy, title: `editor ${i}` })),
    );
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
    for (const o of outcomes)
      if (o.status === 'rejected') assert.ok(o.reason instanceof OptimisticConflictError);
    assert.equal((await docs.findOneByOrFail({ id: 3 })).version, 2);
  });

  it('saveChecked inserts a new entity, and refuses entities without a version column or key', async () => {
    const docs = source.getRepository(Docs);
    await typeorm.saveChecked(docs, { id: 4, title: 'new' });
    assert.equal((await docs.findOneByOrFail({ id: 4 })).version, 1);
    const Plain = new EntitySchema<{ id: number }>({
      name: 'Plain',
      tableName: 'orm_docs',
      columns: { id: { type: Number, primary: true } },
    });
    const plainSource = new DataSource({
      type: 'postgres',
      url: db.url,
      entities: [Plain],
      extra: { options: `-c search_path=${db.schema}`, max: 1 },
    });
    await plainSource.initialize();
    try {
      await assert.rejects(
        typeorm.saveChecked(plainSource.getRepository(Plain), { id: 4 }),
        /@VersionColumn/,
      );
    } finally {
      await plainSource.destroy();
    }
    await assert.rejects(
      typeorm.saveChecked(docs, { title: 'no key', version: 1 } as Doc),
      InvalidArgumentError,
    );
    await assert.rejects(
      typeorm.saveChecked({} as never, { id: 1, title: 'x' }),
      InvalidArgumentError,
    );
  });

  it('row locks outside a transaction and nested transactions are refused, on every adapter', async () => {
    const kdb = new Kysely<Record<string, never>>({
      dialect: new PostgresDialect({ pool: db.newPool(2) }),
    });
    const ddb = drizzle({ client: db.newPool(2) });
    try {
      const lock = { table: 'orm_docs', key: { id: 1 } };
      await assert.rejects(() => kysely.lockRows(kdb as never, lock), InvalidArgumentError);
      await assert.rejects(() => drizzleAdapter.lockRows(ddb, lock), InvalidArgumentError);
      await assert.rejects(() => typeorm.lockRows(source.manager, lock), InvalidArgumentError);
      await kysely.transaction(kdb, async (trx) => {
        await assert.rejects(() => kysely.transaction(trx, async () => 1), InvalidArgumentError);
        assert.equal((await kysely.lockRows(trx, lock)).length, 1);
      });
      await drizzleAdapter.transaction(ddb, async (tx) => {
        await assert.rejects(
          () => drizzleAdapter.transaction(tx, async () => 1),
          InvalidArgumentError,
        );
      });
      await typeorm.transaction(source, async (manager) => {
        await assert.rejects(
          () => typeorm.transaction(manager, async () => 1),
          InvalidArgumentError,
        );
      });
      await assert.rejects(
        () => kysely.transaction(kdb, async () => 1, { isolation: 'snapshot' as never }),
        /options.isolation/,
      );
      await assert.rejects(
        () => kysely.transaction(kdb, async () => 1, { retries: 3 } as never),
        /retries/,
      );
    } finally {
      await kdb.destroy();
    }
  });

  it('Prisma: a lock outside an interactive transaction and a nested transaction are refused; a server error keeps its code and its Prisma error', async () => {
    const PrismaClient = await prismaClientClass('postgresql');
    const prisma = new PrismaClient({
      adapter: new PrismaPg(
        { connectionString: db.url, options: `-c search_path=${db.schema}`, max: 2 },
        { schema: db.schema },
      ),
    });
    try {
      const lock = { table: 'orm_docs', key: { id: 1 } };
      await assert.rejects(() => prismaAdapter.lockRows(prisma, lock), InvalidArgumentError);
      await prismaAdapter.transaction(prisma, async (tx) => {
        await assert.rejects(
          () => prismaAdapter.transaction(tx, async () => 1),
          InvalidArgumentError,
        );
        assert.equal((await prismaAdapter.lockRows(tx, lock)).length, 1);
      });
      const missing = await prismaAdapter
        .atomicDecrement(prisma, { table: 'no_such_table', key: { id: 1 }, column: 'c', amount: 1 })
        .then(
          () => assert.fail('expected an error'),
          (error: unknown) => error as Error & { sqlState?: string },
        );
      assert.match(missing.message, /no_such_table/);
      assert.equal(missing.sqlState ?? (missing as { code?: string }).code, '42P01');
      let cause: unknown = missing;
      while (cause instanceof Error && cause.name !== 'PrismaClientKnownRequestError')
        cause = cause.cause;
      assert.ok(cause instanceof Error, 'the Prisma error is kept in the cause chain');
    } finally {
      await prisma.$disconnect();
    }
    const fake = {
      _activeProvider: 'sqlite',
      $queryRawUnsafe: async () => [],
      $executeRawUnsafe: async () => 0,
    };
    assert.throws(() => prismaAdapter.prismaTarget(fake), /postgresql or mysql/);
    assert.throws(() => prismaAdapter.prismaTarget({} as never), InvalidArgumentError);
    assert.equal(
      prismaAdapter.isRetryableSqlError({
        code: 'P2010',
        meta: { driverAdapterError: { cause: { originalCode: '40P01' } } },
      }),
      true,
    );
  });

  it('a database the adapter cannot serve is a clear error naming it', async () => {
    const sqlite = new Kysely<Record<string, never>>({
      dialect: new SqliteDialect({ database: async () => assert.fail('never opened') }),
    });
    await assert.rejects(
      () => kysely.atomicDecrement(sqlite, { table: 't', key: { id: 1 }, column: 'c', amount: 1 }),
      /PostgreSQL or MySQL/,
    );
    assert.throws(() => kysely.kyselyTarget({} as never), InvalidArgumentError);
    assert.throws(
      () => drizzleAdapter.drizzleTarget({ execute: async () => [] }),
      InvalidArgumentError,
    );
    assert.throws(() => typeorm.typeormTarget({} as never), InvalidArgumentError);
  });

  it('serialization failures are recognised however they are wrapped', () => {
    const pgError = Object.assign(new Error('could not serialize'), { code: '40001' });
    const wrapped = { driverError: { cause: pgError } };
    assert.equal(kysely.isRetryableSqlError(wrapped), true);
    assert.equal(kysely.isRetryableSqlError({ errno: 1213 }), true);
    assert.equal(kysely.isRetryableSqlError({ code: 'P2034' }), true);
    assert.equal(kysely.isRetryableSqlError({ code: '23505' }), false);
    assert.equal(kysely.isRetryableSqlError(null), false);
  });
});

describe('TypeORM saveChecked on MariaDB', () => {
  let db: TestMysql;
  let source: DataSource;
  before(async () => {
    db = await openTestMysql(4);
    await db.pool.query(
      'CREATE TABLE orm_docs (id int PRIMARY KEY, title varchar(40) NOT NULL, version int NOT NULL)',
    );
    source = new DataSource({
      type: 'mariadb',
      host: db.connection.host,
      port: db.connection.port,
      username: db.connection.user,
      password: db.connection.password,
      database: db.connection.database,
      entities: [Docs],
      extra: { connectionLimit: 20 },
    });
    await source.initialize();
  });
  after(async () => {
    await source?.destroy();
    await db?.close();
  });

  it('100 concurrent saves of copies loaded at one version: exactly one lands; the losers see it', async () => {
    const docs = source.getRepository(Docs);
    await docs.save({ id: 1, title: 'v1' });
    const copies = await Promise.all(
      Array.from({ length: 100 }, () => docs.findOneByOrFail({ id: 1 })),
    );
    const outcomes = await Promise.allSettled(
      copies.map((copy, i) => typeorm.saveChecked(docs, { ...copy, title: `editor ${i}` })),
    );
    const landed = outcomes.filter((o) => o.status === 'fulfilled');
    assert.equal(landed.length, 1);
    const winner = (await docs.findOneByOrFail({ id: 1 })).title;
    for (const o of outcomes) {
      if (o.status === 'rejected') {
        assert.ok(o.reason instanceof OptimisticConflictError);
        assert.equal((o.reason.current as Doc | undefined)?.title, winner);
      }
    }
    assert.equal((await docs.findOneByOrFail({ id: 1 })).version, 2);
  });
});
