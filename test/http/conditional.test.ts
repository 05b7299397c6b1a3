/**
 * HTTP conditional writes over real PostgreSQL through Fastify, Express and
 * Hono: strong ETags on reads, 428 without If-Match, 412 with the current
 * ETag on a stale or weak tag, `*` and lists, 304 on If-None-Match,
 * create-if-absent; 100 editors saving the same version at once: exactly
 * one wins and nothing is lost (without If-Match, 99 changes silently
 * vanish); bad input refused, nothing half-written.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  conditionalWrites,
  parseEntityTags,
  sendExpress,
  toResponse,
  type ConditionalHeaders,
  type ConditionalWrites,
} from '../../packages/raceguard/src/http/index.js';
import { sendFastify } from '../../packages/raceguard/src/http/fastify.js';
import { versionedRows } from '../../packages/raceguard/src/postgres/index.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

type Documents = ConditionalWrites<{ id: number }>;

/** The same four routes in each framework. */
const frameworks: [
  string,
  (documents: Documents) => Promise<{ url: string; close: () => Promise<void> }>,
][] = [
  [
    'fastify',
    async (documents) => {
      const app = Fastify();
      app.get<{ Params: { id: string } }>('/documents/:id', async (req, reply) =>
        sendFastify(reply, await documents.read({ id: Number(req.params.id) }, req.headers)),
      );
      app.put<{ Params: { id: string }; Body: Record<string, unknown> }>(
        '/documents/:id',
        async (req, reply) =>
          sendFastify(
            reply,
            await documents.update({ id: Number(req.params.id) }, req.body, req.headers),
          ),
      );
      app.delete<{ Params: { id: string } }>('/documents/:id', async (req, reply) =>
        sendFastify(reply, await documents.delete({ id: Number(req.params.id) }, req.headers)),
      );
      app.post<{ Params: { id: string }; Body: Record<string, unknown> }>(
        '/documents/:id',
        async (req, reply) =>
          sendFastify(
            reply,
            await documents.create({ id: Number(req.params.id) }, req.body, req.headers),
          ),
      );
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      return { url, close: () => app.close() };
    },
  ],
  [
    'express',
    async (documents) => {
      const app = express();
      app.use(express.json());
      const id = (req: express.Request) => ({ id: Number(req.params.id) });
      const headers = (req: express.Request) => req.headers as ConditionalHeaders;
      app.get('/documents/:id', (req, res, next) => {
        documents.read(id(req), headers(req)).then((r) => sendExpress(res, r), next);
      });
      app.put('/documents/:id', (req, res, next) => {
        documents
          .update(id(req), req.body as Record<string, unknown>, headers(req))
          .then((r) => sendExpress(res, r), next);
      });
      app.delete('/documents/:id', (req, res, next) => {
        documents.delete(id(req), headers(req)).then((r) => sendExpress(res, r), next);
      });
      app.post('/documents/:id', (req, res, next) => {
        documents
          .create(id(req), req.body as Record<string, unknown>, headers(req))
          .then((r) => sendExpress(res, r), next);
      });
      const server: Server = await new Promise((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
      };
    },
  ],
  [
    'hono',
    async (documents) => {
      const app = new Hono();
      const headers = (c: {
        req: { header(name: string): string | undefined };
      }): ConditionalHeaders => ({
        'if-match': c.req.header('if-match'),
        'if-none-match': c.req.header('if-none-match'),
      });
      app.get('/documents/:id', async (c) =>
        toResponse(await documents.read({ id: Number(c.req.param('id')) }, headers(c))),
      );
      app.put('/documents/:id', async (c) =>
        toResponse(
          await documents.update({ id: Number(c.req.param('id')) }, await c.req.json(), headers(c)),
        ),
      );
      app.delete('/documents/:id', async (c) =>
        toResponse(await documents.delete({ id: Number(c.req.param('id')) }, headers(c))),
      );
      app.post('/documents/:id', async (c) =>
        toResponse(
          await documents.create({ id: Number(c.req.param('id')) }, await c.req.json(), headers(c)),
        ),
      );
      const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
        const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
      });
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
      };
    },
  ],
];

describe('HTTP conditional writes', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  before(async () => {
    database = await openTestDatabase(40);
    await database.pool.query(
      'CREATE TABLE documents (id int PRIMARY KEY, title text NOT NULL, version int NOT NULL); CREATE TABLE untyped (id int PRIMARY KEY, title text, version text)',
    );
  });
  after(() => database.close());

  for (const [name, start] of frameworks) {
    it(`${name}: ETags, 428, 412 with the current ETag, *, lists, weak tags, 304, create-if-absent, delete`, async () => {
      await database.pool.query(
        "DELETE FROM documents; INSERT INTO documents VALUES (1, 'draft', 1)",
      );
      const documents = conditionalWrites(versionedRows(database.pool, { table: 'documents' }));
      const { url, close } = await start(documents);
      const call = async (
        method: string,
        id: number,
        headers: Record<string, string> = {},
        body?: unknown,
      ) => {
        const response = await fetch(`${url}/documents/${id}`, {
          method,
          headers: {
            ...(body !== undefined && { 'content-type': 'application/json' }),
            ...headers,
          },
          ...(body !== undefined && { body: JSON.stringify(body) }),
        });
        const text = await response.text();
        return {
          status: response.status,
          etag: response.headers.get('etag'),
          type: response.headers.get('content-type'),
          body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>),
        };
      };
      try {
        const read = await call('GET', 1);
        assert.deepEqual([read.status, read.etag, read.body?.title], [200, '"1"', 'draft']);
        assert.equal((await call('GET', 1, { 'if-none-match': '"1"' })).status, 304);
        assert.equal(
          (await call('GET', 1, { 'if-none-match': 'W/"1"' })).status,
          304,
          'weak comparison for If-None-Match',
        );

        const missing = await call('PUT', 1, {}, { title: 'mine' });
        assert.equal(missing.status, 428);
        assert.match(missing.type!, /application\/problem\+json/);
        const saved = await call('PUT', 1, { 'if-match': '"1"' }, { title: 'first edit' });
        assert.deepEqual([saved.status, saved.etag, saved.body?.title], [200, '"2"', 'first edit']);
        const stale = await call('PUT', 1, { 'if-match': '"1"' }, { title: 'second edit' });
        assert.deepEqual([stale.status, stale.etag], [412, '"2"']);
        assert.match(String(stale.body?.detail), /current ETag is "2"/);
        assert.equal(
          (await call('PUT', 1, { 'if-match': 'W/"2"' }, { title: 'weak' })).status,
          412,
          'weak tags never match a write',
        );
        assert.equal((await call('PUT', 1, { 'if-match': 'abc' }, { title: 'x' })).status, 400);
        assert.equal((await call('PUT', 1, { 'if-match': '"2"' }, ['not', 'fields'])).status, 400);
        assert.equal((await call('PUT', 1, { 'if-match': '"2"' }, {})).status, 400);
        assert.equal(
          (await call('PUT', 1, { 'if-match': '"nonsense"' }, { title: 'x' })).status,
          412,
        );
        const listed = await call('PUT', 1, { 'if-match': '"7", "2"' }, { title: 'listed' });
        assert.deepEqual([listed.status, listed.etag], [200, '"3"']);
        const star = await call('PUT', 1, { 'if-match': '*' }, { title: 'any version' });
        assert.deepEqual([star.status, star.etag], [200, '"4"']);
        assert.equal(
          (await call('PUT', 9, { 'if-match': '*' }, { title: 'nobody' })).status,
          412,
          'If-Match: * on nothing',
        );
        assert.equal(
          (await call('GET', 1)).body?.title,
          'any version',
          'no refused write left anything behind',
        );

        const created = await call('POST', 2, { 'if-none-match': '*' }, { title: 'new' });
        assert.deepEqual([created.status, created.etag], [201, '"1"']);
        const again = await call('POST', 2, { 'if-none-match': '*' }, { title: 'again' });
        assert.deepEqual([again.status, again.etag], [412, '"1"']);
        assert.equal((await call('POST', 2, {}, { title: 'again' })).status, 409);

        assert.equal((await call('DELETE', 2, { 'if-match': '"5"' })).status, 412);
        assert.equal((await call('DELETE', 2)).status, 428);
        assert.equal((await call('DELETE', 2, { 'if-match': '"1"' })).status, 204);
        assert.equal((await call('GET', 2)).status, 404);
      } finally {
        await close();
      }
    });
  }

  it('100 editors save the same version at once: one wins, 99 get 412, nothing is lost; without If-Match 99 changes vanish', async () => {
    const documents = conditionalWrites(versionedRows(database.pool, { table: 'documents' }));
    const { url, close } = await frameworks[0]![1](documents);
    try {
      const race = async (withIfMatch: boolean) => {
        await database.pool.query(
          "DELETE FROM documents; INSERT INTO documents VALUES (1, 'draft', 1)",
        );
        const statuses = await Promise.all(
          Array.from({ length: 100 }, async (_, editor) => {
            const response = await fetch(`${url}/documents/1`, {
              method: 'PUT',
              headers: {
                'content-type': 'application/json',
                ...(withIfMatch ? { 'if-match': '"1"' } : {}),
              },
              body: JSON.stringify({ title: `edit by ${editor}` }),
            });
            await response.arrayBuffer();
            return response.status;
          }),
        );
        const { rows } = await database.pool.query<{ version: number }>(
          'SELECT version FROM documents WHERE id = 1',
        );
        return {
          ok: statuses.filter((s) => s === 200).length,
          failed: statuses.filter((s) => s === 412).length,
          version: rows[0]!.version,
        };
      };
      assert.deepEqual(await race(true), { ok: 1, failed: 99, version: 2 });
      // Control: writes without a precondition all "succeed"; the row shows only one of the 100 edits.
      const loose = conditionalWrites(versionedRows(database.pool, { table: 'documents' }), {
        requireIfMatch: false,
      });
      const control = await frameworks[0]![1](loose);
      await close();
      try {
        const raced = await (async () => {
          await database.pool.query(
            "DELETE FROM documents; INSERT INTO documents VALUES (1, 'draft', 1)",
          );
          const statuses = await Promise.all(
            Array.from({ length: 100 }, async (_, editor) => {
              const response = await fetch(`${control.url}/documents/1`, {
                method: 'PUT',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ title: `edit by ${editor}` }),
              });
              await response.arrayBuffer();
              return response.status;
            }),
          );
          return statuses.filter((s) => s === 200).length;
        })();
        assert.ok(
          raced > 1,
          `${raced} editors were told their change was saved; the row holds one`,
        );
      } finally {
        await control.close();
      }
    } finally {
      await close().catch(() => undefined);
    }
  });

  it('refuses bad input: malformed tags, a version column of the wrong type, a store without methods, hostile identifiers', async () => {
    assert.throws(() => parseEntityTags('"a", b'), InvalidArgumentError);
    assert.deepEqual(parseEntityTags('W/"a", "b,c"'), [
      { weak: true, opaque: 'a' },
      { weak: false, opaque: 'b,c' },
    ]);
    assert.throws(() => conditionalWrites({} as never), /VersionStore/);
    assert.throws(
      () =>
        conditionalWrites(versionedRows(database.pool, { table: 'documents' }), { maxAttempts: 0 }),
      InvalidArgumentError,
    );
    await database.pool.query("INSERT INTO untyped VALUES (1, 'x', 'abc')");
    const untyped = conditionalWrites(versionedRows(database.pool, { table: 'untyped' }));
    await assert.rejects(untyped.read({ id: 1 }, {}), /an integer column/);
    const hostile = versionedRows(database.pool, { table: 'documents"; DROP TABLE documents; --' });
    await assert.rejects(hostile.read({ id: 1 }));
    const { rows } = await database.pool.query(
      "SELECT to_regclass('documents') IS NOT NULL AS present",
    );
    assert.equal(rows[0]!.present, true);
    const documents = versionedRows(database.pool, { table: 'documents' });
    await assert.rejects(documents.update({ id: 1 }, '1', { version: 99 }), /version column/);
  });

  it('regression: the body never writes key or version columns, unknown columns are a 400 without database text, tags compare character by character, lists may hold empty elements', async () => {
    await database.pool.query(
      "CREATE TABLE tenant_docs (tenant text, id int, title text NOT NULL, version int NOT NULL, PRIMARY KEY (tenant, id)); INSERT INTO tenant_docs VALUES ('a', 1, 'draft', 9)",
    );
    const docs = conditionalWrites(versionedRows(database.pool, { table: 'tenant_docs' }));
    const key = { tenant: 'a', id: 1 };
    const bodyOf = (r: { body: unknown }) => JSON.parse(String(r.body)) as Record<string, unknown>;
    // Moving the document to another tenant through the body: refused.
    const moved = await docs.update(key, { tenant: 'b', title: 'stolen' }, { 'if-match': '"9"' });
    assert.equal(moved.status, 400);
    assert.equal(moved.headers['content-type'], 'application/problem+json');
    assert.match(String(bodyOf(moved).detail), /"tenant" is part of the resource key/);
    const version = await docs.update(key, { version: 1, title: 'x' }, { 'if-match': '"9"' });
    assert.equal(version.status, 400);
    assert.match(String(bodyOf(version).detail), /version column/);
    const unknown = await docs.update(key, { nope: 1 }, { 'if-match': '"9"' });
    assert.equal(unknown.status, 400);
    assert.match(String(bodyOf(unknown).detail), /"nope" is not a column/);
    assert.doesNotMatch(String(unknown.body), /does not exist|42703/);
    const createdUnknown = await docs.create({ tenant: 'a', id: 2 }, { title: 't', nope: 1 }, {});
    assert.equal(createdUnknown.status, 400);
    // The key's own value in the body (a whole representation) is fine.
    const same = await docs.update(key, { tenant: 'a', id: 1, title: 'ok' }, { 'if-match': '"9"' });
    assert.equal(same.status, 200);
    // "09" is not "9" (strong comparison is character by character): 412.
    const padded = await docs.update(key, { title: 'padded' }, { 'if-match': '"010"' });
    assert.equal(padded.status, 412);
    const listed = await docs.update(key, { title: 'listed' }, { 'if-match': ', "3",, "10" ,' });
    assert.equal(listed.status, 200);
    const { rows } = await database.pool.query(
      'SELECT tenant, id, title, version FROM tenant_docs',
    );
    assert.deepEqual(rows, [{ tenant: 'a', id: 1, title: 'listed', version: 11 }]);
    assert.deepEqual(parseEntityTags(' , "a" ,, W/"b", '), [
      { weak: false, opaque: 'a' },
      { weak: true, opaque: 'b' },
    ]);
    assert.throws(() => parseEntityTags('"a" "b"'), InvalidArgumentError);
    assert.throws(() => parseEntityTags(' , , '), InvalidArgumentError);
  });
});
