/** The HTTP guarantee on the durable stores: 100 concurrent duplicates over real HTTP, one charge. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import type { IdempotencyStore } from '../../packages/raceguard/src/idempotency/store.js';
import {
  createIdempotencyTable,
  PostgresIdempotencyStore,
} from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { RedisIdempotencyStore } from '../../packages/raceguard/src/redis/idempotency-store.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import { startPaymentApp, type Framework } from './apps.js';

describe('HTTP idempotency on the durable stores', () => {
  let db: TestDatabase;
  let redis: TestRedis;
  before(async () => {
    db = await openTestDatabase(20);
    await createIdempotencyTable(db.pool);
    redis = await openTestRedis();
  });
  after(async () => {
    await redis.close();
    await db.close();
  });

  const cases: [string, Framework, () => IdempotencyStore][] = [
    ['PostgreSQL', 'fastify', () => new PostgresIdempotencyStore({ client: db.pool })],
    ['Redis', 'fastify', () => new RedisIdempotencyStore({ client: redis.client })],
    ['Redis', 'express', () => new RedisIdempotencyStore({ client: redis.client })],
  ];
  for (const [name, framework, store] of cases) {
    it(`${name} on ${framework}: 100 concurrent duplicates charge once, in every trial`, async () => {
      const app = await startPaymentApp(framework, { store: store() });
      const pool = new Pool(app.url, { connections: 100 });
      try {
        for (let trial = 0; trial < 5; trial += 1) {
          const key = `"${randomUUID()}"`;
          const before = app.charges.get('acme') ?? 0;
          const replies = await Promise.all(
            Array.from({ length: 100 }, async () => {
              const response = await pool.request({
                method: 'POST',
                path: '/payments',
                headers: {
                  'content-type': 'application/json',
                  'x-tenant': 'acme',
                  'idempotency-key': key,
                },
                body: JSON.stringify({ amount: 10 }),
              });
              return { status: response.statusCode, body: await response.body.text() };
            }),
          );
          assert.equal((app.charges.get('acme') ?? 0) - before, 1, `trial ${trial}`);
          const created = replies.filter((r) => r.status === 201);
          assert.equal(created.length + replies.filter((r) => r.status === 409).length, 100);
          assert.equal(new Set(created.map((r) => r.body)).size, 1);
        }
      } finally {
        await pool.close();
        await app.close();
      }
    });
  }
});
