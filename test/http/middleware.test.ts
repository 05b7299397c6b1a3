import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { IdempotencyStoreError } from '../../packages/raceguard/src/idempotency/errors.js';
import { MemoryIdempotencyStore } from '../../packages/raceguard/src/idempotency/memory-store.js';
import type { IdempotencyStore } from '../../packages/raceguard/src/idempotency/store.js';
import { PROBLEM_TYPES } from '../../packages/raceguard/src/http/policy.js';
import { FRAMEWORKS, startPaymentApp, type AdapterOptions, type PaymentApp } from './apps.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function post(
  pool: Pool,
  body: unknown,
  headers: Record<string, string> = {},
  path = '/payments',
): Promise<Reply> {
  const response = await pool.request({
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json', 'x-tenant': 'acme', ...headers },
    body: JSON.stringify(body),
  });
  return {
    status: response.statusCode,
    headers: response.headers,
    body: await response.body.text(),
  };
}

const key = (): string => `"${randomUUID()}"`;

for (const framework of FRAMEWORKS) {
  describe(`HTTP idempotency on ${framework}`, () => {
    let app: PaymentApp;
    let pool: Pool;
    const start = async (options: AdapterOptions): Promise<void> => {
      await pool?.close();
      await app?.close();
      app = await startPaymentApp(framework, options);
      pool = new Pool(app.url, { connections: 128, pipelining: 1 });
    };
    before(() => start({ store: new MemoryIdempotencyStore() }));
    after(async () => {
      await pool.close();
      await app.close();
    });

    it('100 concurrent identical requests: one charge; every response is the original or a 409', async () => {
      for (let trial = 0; trial < 3; trial += 1) {
        const k = key();
        const before = app.charges.get('acme') ?? 0;
        const replies = await Promise.all(
          Array.from({ length: 100 }, () => post(pool, { amount: 10 }, { 'idempotency-key': k })),
        );
        assert.equal(
          (app.charges.get('acme') ?? 0) - before,
          1,
          `trial ${trial}: charged more than once`,
        );
        const created = replies.filter((r) => r.status === 201);
        const conflicts = replies.filter((r) => r.status === 409);
        assert.equal(
          created.length + conflicts.length,
          100,
          replies.map((r) => r.status).join(','),
        );
        assert.equal(new Set(created.map((r) => r.body)).size, 1);
        for (const c of conflicts) {
          assert.match(String(c.headers['content-type']), /^application\/problem\+json/);
          assert.equal(JSON.parse(c.body).type, PROBLEM_TYPES.inFlight);
          assert.ok(Number(c.headers['retry-after']) >= 1);
        }
        const retry = await post(pool, { amount: 10 }, { 'idempotency-key': k });
        assert.equal(retry.status, 201);
        assert.equal(retry.body, created[0]?.body);
        assert.equal(retry.headers['idempotent-replayed'], 'true');
      }
    });

    it('a replay returns the original status, body and allowlisted headers, but never cookies', async () => {
      const k = key();
      const first = await post(pool, { amount: 7 }, { 'idempotency-key': k });
      assert.equal(first.status, 201);
      assert.equal(first.headers['idempotent-replayed'], undefined);
      const again = await post(pool, { amount: 7 }, { 'idempotency-key': k });
      assert.equal(again.status, 201);
      assert.equal(again.body, first.body);
      assert.equal(again.headers.location, '/payments/1');
      assert.match(String(again.headers['content-type']), /application\/json/);
      assert.equal(again.headers['set-cookie'], undefined);
      assert.equal(again.headers['idempotent-replayed'], 'true');
    });

    it('JSON member order does not make a different request', async () => {
      const k = key();
      const before = app.charges.get('acme') ?? 0;
      await post(pool, { amount: 3, note: 'x' }, { 'idempotency-key': k });
      const again = await post(pool, { note: 'x', amount: 3 }, { 'idempotency-key': k });
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal((app.charges.get('acme') ?? 0) - before, 1);
    });

    it('missing, empty, malformed, over-long and non-ASCII keys get 400 problems and charge nothing', async () => {
      const before = app.charges.get('acme') ?? 0;
      const cases: [Record<string, string>, string][] = [
        [{}, PROBLEM_TYPES.keyMissing],
        [{ 'idempotency-key': '""' }, PROBLEM_TYPES.keyInvalid],
        [{ 'idempotency-key': '"unterminated' }, PROBLEM_TYPES.keyInvalid],
        [{ 'idempotency-key': 'two words' }, PROBLEM_TYPES.keyInvalid],
        [{ 'idempotency-key': `"${'k'.repeat(256)}"` }, PROBLEM_TYPES.keyInvalid],
        [{ 'idempotency-key': '"cl\u00e9"' }, PROBLEM_TYPES.keyInvalid],
      ];
      for (const [headers, type] of cases) {
        const reply = await post(pool, { amount: 1 }, headers);
        assert.equal(reply.status, 400, JSON.stringify(headers));
        assert.match(String(reply.headers['content-type']), /^application\/problem\+json/);
        const problem = JSON.parse(reply.body) as { type: string; status: number; title: string };
        assert.equal(problem.type, type);
        assert.equal(problem.status, 400);
      }
      assert.equal((app.charges.get('acme') ?? 0) - before, 0);
    });

    it('reusing a key with a different payload gets 422 and the stored response is not revealed', async () => {
      const k = key();
      await post(pool, { amount: 10 }, { 'idempotency-key': k });
      const reuse = await post(pool, { amount: 99 }, { 'idempotency-key': k });
      assert.equal(reuse.status, 422);
      assert.equal(JSON.parse(reuse.body).type, PROBLEM_TYPES.keyReused);
      assert.doesNotMatch(reuse.body, /charge/);
    });

    it('the same key from two tenants charges each once, and each sees only its own response', async () => {
      const k = key();
      const a = await post(pool, { amount: 1 }, { 'idempotency-key': k, 'x-tenant': 'tenant-a' });
      const b = await post(pool, { amount: 1 }, { 'idempotency-key': k, 'x-tenant': 'tenant-b' });
      assert.equal(JSON.parse(a.body).tenant, 'tenant-a');
      assert.equal(JSON.parse(b.body).tenant, 'tenant-b');
      const b2 = await post(pool, { amount: 1 }, { 'idempotency-key': k, 'x-tenant': 'tenant-b' });
      assert.equal(JSON.parse(b2.body).tenant, 'tenant-b');
      assert.equal(b2.headers['idempotent-replayed'], 'true');
    });

    it('5xx responses are not stored: the retry runs again', async () => {
      const k = key();
      const first = await post(pool, { amount: 1, fail: true }, { 'idempotency-key': k });
      assert.equal(first.status, 500);
      const retry = await post(pool, { amount: 1 }, { 'idempotency-key': k });
      // A different body: the failed attempt left no record to mismatch against.
      assert.equal(retry.status, 201);
      assert.equal(retry.headers['idempotent-replayed'], undefined);
    });

    it('unguarded methods pass through without a key', async () => {
      const response = await pool.request({ method: 'GET', path: '/payments' });
      assert.equal(response.statusCode, 200);
      assert.deepEqual(await response.body.json(), { list: true });
    });

    it('stripe mode answers key reuse with 400', async () => {
      await start({ store: new MemoryIdempotencyStore(), mode: 'stripe' });
      const k = key();
      await post(pool, { amount: 10 }, { 'idempotency-key': k });
      const reuse = await post(pool, { amount: 11 }, { 'idempotency-key': k });
      assert.equal(reuse.status, 400);
      assert.equal(JSON.parse(reuse.body).type, PROBLEM_TYPES.keyReused);
    });

    it('a store that is down: 503 with Retry-After, and the handler does not run', async () => {
      const down = new Error('ECONNREFUSED 127.0.0.1:6379');
      const broken: IdempotencyStore = {
        claim: () => Promise.reject(down),
        complete: () => Promise.reject(down),
        renew: () => Promise.reject(down),
        abandon: () => Promise.reject(down),
        advance: () => Promise.reject(down),
      };
      await start({ store: broken });
      const reply = await post(pool, { amount: 1 }, { 'idempotency-key': key() });
      assert.equal(reply.status, 503);
      assert.equal(reply.headers['retry-after'], '1');
      assert.equal(JSON.parse(reply.body).type, PROBLEM_TYPES.storeUnavailable);
      assert.equal(app.charges.size, 0);
      assert.ok(new IdempotencyStoreError('claim', down).cause === down);
    });

    it('required: false lets requests without a key through unguarded', async () => {
      await start({ store: new MemoryIdempotencyStore(), required: false });
      const reply = await post(pool, { amount: 1 });
      assert.equal(reply.status, 201);
    });
  });
}
