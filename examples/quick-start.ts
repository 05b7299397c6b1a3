/**
 * The README's quick start, runnable: `npx tsx examples/quick-start.ts`
 * (uses DATABASE_URL, or starts an embedded PostgreSQL).
 */
import pg from 'pg';
import { atomicDecrement, lockRows, transaction } from 'raceguard/postgres';
import { usePostgres } from 'raceguard/testing';

await using server = await usePostgres();
const pool = new pg.Pool({ connectionString: server.url });
await pool.query(`DROP TABLE IF EXISTS qs_products; CREATE TABLE qs_products (id int PRIMARY KEY, stock int NOT NULL);
  INSERT INTO qs_products VALUES (1, 10);`);

// 1. Stock, balances, caps: check and write in one statement.
//    100 buyers race for 10 units; exactly 10 purchases apply.
const buys = await Promise.all(
  Array.from({ length: 100 }, () =>
    atomicDecrement(pool, { table: 'qs_products', key: { id: 1 }, column: 'stock', amount: 1 }),
  ),
);
console.log('sold', buys.filter((b) => b.applied).length); // sold 10

// 2. Read-check-write that needs more than one statement: lock the row first.
await pool.query('UPDATE qs_products SET stock = 3 WHERE id = 1');
const sold = await transaction(pool, async (tx) => {
  const [product] = await lockRows(tx, {
    table: 'qs_products',
    key: { id: 1 },
    lockTimeoutMs: 2000,
  });
  if (Number(product?.stock) < 2) return false;
  await tx.query('UPDATE qs_products SET stock = stock - 2 WHERE id = 1');
  return true;
});
console.log('bundle sold', sold); // bundle sold true

// 3. Or run it SERIALIZABLE and let raceguard retry serialization failures.
await transaction(
  pool,
  async (tx) => {
    const { rows } = await tx.query('SELECT stock FROM qs_products WHERE id = 1');
    await tx.query('UPDATE qs_products SET stock = $1 WHERE id = 1', [Number(rows[0]?.stock) + 5]);
  },
  { isolation: 'serializable', maxAttempts: 10 },
);
console.log('restocked', (await pool.query('SELECT stock FROM qs_products')).rows[0]); // { stock: 6 }
await pool.query('DROP TABLE qs_products');
await pool.end();
