/**
 * A small HTTP API for `raceguard audit`, apart from the lab's code: for
 * each race shape a racy handler and its correct twin, in plain `pg`
 * (autocommit, READ COMMITTED, REPEATABLE READ and SERIALIZABLE) and
 * through Drizzle ORM, plus one whose race lives in memory. Its pool
 * connects through the proxy.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { and, eq, gte, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable } from 'drizzle-orm/pg-core';
import { atomicDecrement } from '../../packages/raceguard/src/drizzle/index.js';

type Handler = (db: pg.Pool, body: Record<string, unknown>) => Promise<[number, unknown]>;

export const SCHEMA = `
  CREATE TABLE products (id int PRIMARY KEY, stock int NOT NULL);
  CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
  CREATE TABLE users_unique (id serial PRIMARY KEY, email text NOT NULL UNIQUE);
  CREATE TABLE bookings (id serial PRIMARY KEY, show int NOT NULL);
  CREATE TABLE doctors (name text PRIMARY KEY, on_call boolean NOT NULL);
  CREATE TABLE docs (id int PRIMARY KEY, doc jsonb NOT NULL, version int NOT NULL);
  CREATE TABLE payments (id serial PRIMARY KEY, request_id text NOT NULL, amount int NOT NULL);
  CREATE TABLE coupons (code text PRIMARY KEY, used int NOT NULL, max_uses int NOT NULL);`;

/** The products table as Drizzle declares it. */
const products = pgTable('products', { id: integer('id').primaryKey(), stock: integer('stock') });

/** Runs `work` in a transaction at `isolation`, retrying serialization failures. */
async function inTransaction<T>(
  db: pg.Pool,
  isolation: string,
  work: (c: pg.PoolClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    const c = await db.connect();
    try {
      await c.query(`BEGIN ISOLATION LEVEL ${isolation}`);
      const result = await work(c);
      await c.query('COMMIT');
      return result;
    } catch (error) {
      await c.query('ROLLBACK').catch(() => undefined);
      const code = (error as { code?: string }).code;
      if ((code === '40001' || code === '40P01') && attempt < 20) continue;
      throw error;
    } finally {
      c.release();
    }
  }
}

let memoryCounter = 0;

export const HANDLERS: Readonly<Record<string, Handler>> = {
  // Lost update, autocommit: the new stock is computed in the application.
  'POST /buy/autocommit': async (db) => {
    const { rows } = await db.query('SELECT stock FROM products WHERE id = $1', [1]);
    await db.query('UPDATE products SET stock = $1 WHERE id = $2', [rows[0].stock - 1, 1]);
    return [200, { ok: true }];
  },
  // Lost update inside a READ COMMITTED transaction.
  'POST /buy/read-committed': (db) =>
    inTransaction(db, 'READ COMMITTED', async (c) => {
      const { rows } = await c.query('SELECT stock FROM products WHERE id = $1', [1]);
      await c.query('UPDATE products SET stock = $1 WHERE id = $2', [rows[0].stock - 1, 1]);
      return [200, { ok: true }];
    }),
  // Twin: the row locked for the transaction.
  'POST /buy/for-update': (db) =>
    inTransaction(db, 'READ COMMITTED', async (c) => {
      const { rows } = await c.query('SELECT stock FROM products WHERE id = $1 FOR UPDATE', [1]);
      await c.query('UPDATE products SET stock = $1 WHERE id = $2', [rows[0].stock - 1, 1]);
      return [200, { ok: true }];
    }),
  // Twin: REPEATABLE READ turns the second writer into a serialization failure, retried.
  'POST /buy/repeatable-read': (db) =>
    inTransaction(db, 'REPEATABLE READ', async (c) => {
      const { rows } = await c.query('SELECT stock FROM products WHERE id = $1', [1]);
      await c.query('UPDATE products SET stock = $1 WHERE id = $2', [rows[0].stock - 1, 1]);
      return [200, { ok: true }];
    }),
  // Check-then-act: the check in the application, the decrement unguarded.
  'POST /buy/check-then-act': async (db) => {
    const { rows } = await db.query('SELECT stock FROM products WHERE id = $1', [1]);
    if (rows[0].stock <= 0) return [409, { error: 'sold out' }];
    await db.query('UPDATE products SET stock = stock - 1 WHERE id = $1', [1]);
    return [200, { ok: true }];
  },
  // Twin: the guard in the statement, the row count checked.
  'POST /buy/guarded': async (db) => {
    const { rowCount } = await db.query(
      'UPDATE products SET stock = stock - 1 WHERE id = $1 AND stock >= 1',
      [1],
    );
    return rowCount === 1 ? [200, { ok: true }] : [409, { error: 'sold out' }];
  },
  // Check-then-insert without a unique constraint.
  'POST /signup': async (db, body) => {
    const { rows } = await db.query('SELECT id FROM users WHERE email = $1', [body.email]);
    if (rows.length > 0) return [409, { error: 'taken' }];
    await db.query('INSERT INTO users (email) VALUES ($1)', [body.email]);
    return [201, { ok: true }];
  },
  // Twin: the same code on a table with a unique constraint (the loser gets 23505: a 409).
  'POST /signup/unique': async (db, body) => {
    const { rows } = await db.query('SELECT id FROM users_unique WHERE email = $1', [body.email]);
    if (rows.length > 0) return [409, { error: 'taken' }];
    try {
      await db.query('INSERT INTO users_unique (email) VALUES ($1)', [body.email]);
    } catch (error) {
      if ((error as { code?: string }).code === '23505') return [409, { error: 'taken' }];
      throw error;
    }
    return [201, { ok: true }];
  },
  // Capped count: at most 3 bookings per show.
  'POST /book': async (db) => {
    const { rows } = await db.query('SELECT count(*)::int AS n FROM bookings WHERE show = $1', [1]);
    if (rows[0].n >= 3) return [409, { error: 'full' }];
    await db.query('INSERT INTO bookings (show) VALUES ($1)', [1]);
    return [201, { ok: true }];
  },
  // Twin: the same in a SERIALIZABLE transaction, retried.
  'POST /book/serializable': (db) =>
    inTransaction(db, 'SERIALIZABLE', async (c) => {
      const { rows } = await c.query(
        'SELECT count(*)::int AS n FROM bookings WHERE show = $1',
        [1],
      );
      if (rows[0].n >= 3) return [409, { error: 'full' }];
      await c.query('INSERT INTO bookings (show) VALUES ($1)', [1]);
      return [201, { ok: true }];
    }),
  // Write skew at REPEATABLE READ: at least one doctor must stay on call.
  'POST /off-call/repeatable-read': (db, body) =>
    inTransaction(db, 'REPEATABLE READ', async (c) => {
      const { rows } = await c.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
      if (rows[0].n < 2) return [409, { error: 'last one on call' }];
      await c.query('UPDATE doctors SET on_call = false WHERE name = $1', [body.name]);
      return [200, { ok: true }];
    }),
  // Twin: SERIALIZABLE, retried.
  'POST /off-call/serializable': (db, body) =>
    inTransaction(db, 'SERIALIZABLE', async (c) => {
      const { rows } = await c.query('SELECT count(*)::int AS n FROM doctors WHERE on_call');
      if (rows[0].n < 2) return [409, { error: 'last one on call' }];
      await c.query('UPDATE doctors SET on_call = false WHERE name = $1', [body.name]);
      return [200, { ok: true }];
    }),
  // Read-modify-write of a document.
  'POST /doc/tag': async (db, body) => {
    const { rows } = await db.query('SELECT doc FROM docs WHERE id = $1', [1]);
    const doc = { ...rows[0].doc, tags: [...rows[0].doc.tags, body.tag] };
    await db.query('UPDATE docs SET doc = $1 WHERE id = $2', [JSON.stringify(doc), 1]);
    return [200, { ok: true }];
  },
  // Twin: the version checked in the write, retried on a lost race.
  'POST /doc/tag-versioned': async (db, body) => {
    for (;;) {
      const { rows } = await db.query('SELECT doc, version FROM docs WHERE id = $1', [1]);
      const doc = { ...rows[0].doc, tags: [...rows[0].doc.tags, body.tag] };
      const { rowCount } = await db.query(
        'UPDATE docs SET doc = $1, version = version + 1 WHERE id = $2 AND version = $3',
        [JSON.stringify(doc), 1, rows[0].version],
      );
      if (rowCount === 1) return [200, { ok: true }];
    }
  },
  // A duplicate-request check done as SELECT then INSERT.
  'POST /pay': async (db, body) => {
    const { rows } = await db.query('SELECT id FROM payments WHERE request_id = $1', [
      body.requestId,
    ]);
    if (rows.length > 0) return [200, { replayed: true }];
    await db.query('INSERT INTO payments (request_id, amount) VALUES ($1, $2)', [
      body.requestId,
      10,
    ]);
    return [201, { ok: true }];
  },
  // Twin: INSERT ... ON CONFLICT on a unique index.
  'POST /pay/on-conflict': async (db, body) => {
    const { rowCount } = await db.query(
      'INSERT INTO users_unique (email) VALUES ($1) ON CONFLICT (email) DO NOTHING',
      [body.requestId],
    );
    return rowCount === 1 ? [201, { ok: true }] : [200, { replayed: true }];
  },
  // Through an ORM: Drizzle reads the row, the application computes the new stock.
  'POST /orm/buy': async (db) => {
    const orm = drizzle(db);
    const [row] = await orm.select().from(products).where(eq(products.id, 1));
    await orm
      .update(products)
      .set({ stock: (row?.stock ?? 0) - 1 })
      .where(eq(products.id, 1));
    return [200, { ok: true }];
  },
  // Twin: Drizzle's row lock in a transaction.
  'POST /orm/buy-for-update': (db) =>
    drizzle(db).transaction(async (tx) => {
      const [row] = await tx.select().from(products).where(eq(products.id, 1)).for('update');
      await tx
        .update(products)
        .set({ stock: (row?.stock ?? 0) - 1 })
        .where(eq(products.id, 1));
      return [200, { ok: true }];
    }),
  // Twin: Drizzle's own guarded update, built with its SQL helpers.
  'POST /orm/buy-guarded': async (db) => {
    const updated = await drizzle(db)
      .update(products)
      .set({ stock: sql`${products.stock} - 1` })
      .where(and(eq(products.id, 1), gte(products.stock, 1)))
      .returning({ id: products.id });
    return updated.length === 1 ? [200, { ok: true }] : [409, { error: 'sold out' }];
  },
  // Twin: raceguard's atomic decrement through its Drizzle adapter.
  'POST /orm/buy-raceguard': async (db) => {
    const result = await atomicDecrement(drizzle(db), {
      table: 'products',
      key: { id: 1 },
      column: 'stock',
      amount: 1,
    });
    return result.applied ? [200, { ok: true }] : [409, { error: 'sold out' }];
  },
  // The narrowest window: the write leaves in the same event-loop turn the
  // read's reply arrives in (no await, no other I/O between), so two
  // requests overlap only if both replies land before either write does.
  'POST /coupon/redeem': (db) =>
    db.connect().then((c) =>
      c
        .query('SELECT used, max_uses FROM coupons WHERE code = $1', ['SAVE10'])
        .then(({ rows }) =>
          rows[0].used >= rows[0].max_uses
            ? ([409, { error: 'used up' }] as [number, unknown])
            : c
                .query('UPDATE coupons SET used = used + 1 WHERE code = $1', ['SAVE10'])
                .then((): [number, unknown] => [200, { ok: true }]),
        )
        .finally(() => c.release()),
    ),
  // A race in memory: nothing to see in SQL.
  'POST /memory': async () => {
    const seen = memoryCounter;
    await new Promise((resolve) => setImmediate(resolve));
    memoryCounter = seen + 1;
    return [200, { n: memoryCounter }];
  },
};

/** Serves {@link HANDLERS} on a free loopback port over `db`. */
export async function startAuditApi(db: pg.Pool): Promise<{ url: string; server: Server }> {
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const handler = HANDLERS[`${request.method} ${request.url}`];
      const reply = (status: number, body: unknown): void => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(body));
      };
      if (handler === undefined) return reply(404, { error: 'no route' });
      const text = Buffer.concat(chunks).toString();
      handler(db, text === '' ? {} : (JSON.parse(text) as Record<string, unknown>)).then(
        ([status, body]) => reply(status, body),
        (error: Error) => reply(500, { error: error.message }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
