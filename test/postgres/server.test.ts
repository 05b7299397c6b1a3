import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { it } from 'node:test';
import pg from 'pg';
import {
  startEmbeddedPostgres,
  usePostgres,
} from '../../packages/raceguard/src/testing/postgres.js';

const ownDataDirs = () =>
  readdirSync(tmpdir()).filter((d) => d.startsWith(`raceguard-pg-${process.pid}-`));

it('starts a real embedded PostgreSQL on loopback and removes it on stop', async () => {
  const server = await startEmbeddedPostgres();
  assert.equal(server.embedded, true);
  assert.match(server.url, /^postgres:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres$/);
  assert.equal(ownDataDirs().length, 1);
  const pool = new pg.Pool({ connectionString: server.url });
  const { rows } = await pool.query('SELECT 1 + 1 AS two');
  assert.equal(rows[0].two, 2);
  await pool.end(); // resolves before its sockets close: stop() must not crash on them
  await server.stop();
  await server.stop(); // idempotent
  assert.deepEqual(ownDataDirs(), []);
  const client = new pg.Client({ connectionString: server.url });
  await assert.rejects(client.connect(), /ECONNREFUSED/);
});

it('uses the given server instead of starting one', async () => {
  const server = await usePostgres({ url: 'postgres://example@127.0.0.1:1/x' });
  assert.deepEqual([server.url, server.embedded], ['postgres://example@127.0.0.1:1/x', false]);
  await server.stop();
});
