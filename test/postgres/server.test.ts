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
  // The test default: commits do not wait for the disk.
  assert.equal((await pool.query('SHOW fsync')).rows[0].fsync, 'off');
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

it('durable: true starts it with production durability, for benchmarks; bad options are refused', async () => {
  await using server = await startEmbeddedPostgres({ durable: true, maxConnections: 40 });
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync,
              current_setting('full_page_writes') AS fpw, current_setting('max_connections') AS max`,
    );
    assert.deepEqual(rows[0], { fsync: 'on', sync: 'on', fpw: 'on', max: '40' });
  } finally {
    await client.end();
  }
  await assert.rejects(startEmbeddedPostgres({ durable: 'yes' as never }), /options\.durable/);
  await assert.rejects(startEmbeddedPostgres({ maxConnections: 0 }), /options\.maxConnections/);
});
