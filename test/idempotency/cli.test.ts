import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { idempotent } from '../../packages/raceguard/src/idempotency/idempotent.js';
import {
  createIdempotencyTable,
  PostgresIdempotencyStore,
} from '../../packages/raceguard/src/postgres/idempotency-store.js';
import { runCli } from '../helpers/cli.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('raceguard idempotency (CLI)', () => {
  let db: TestDatabase;
  let url: string;

  before(async () => {
    db = await openTestDatabase(4);
    await createIdempotencyTable(db.pool, { table: 'cli_records' });
    const u = new URL(db.url);
    u.searchParams.set('options', `-c search_path=${db.schema}`);
    url = u.toString();
  });
  after(() => db.close());

  it('reap deletes expired records only and reports the count as JSON', async () => {
    const store = new PostgresIdempotencyStore({ client: db.pool, table: 'cli_records' });
    for (const key of ['a', 'b', 'c']) {
      await idempotent(store, { scope: 's', key, ttlMs: 50, leaseMs: 50 }, () => key);
    }
    await idempotent(store, { scope: 's', key: 'kept' }, () => 'kept');
    await new Promise((r) => setTimeout(r, 100));
    const run = await runCli([
      'idempotency',
      'reap',
      '--database-url',
      url,
      '--table',
      'cli_records',
      '--batch-size',
      '2',
      '--json',
    ]);
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { deleted: 3 });
    const { rows } = await db.pool.query('SELECT key FROM cli_records');
    assert.deepEqual(
      rows.map((r: { key: string }) => r.key),
      ['kept'],
    );
  });

  it('exits 2 with a clear message on bad arguments, a missing table or a bad operations module', async () => {
    const badSize = await runCli([
      'idempotency',
      'reap',
      '--database-url',
      url,
      '--batch-size',
      '0',
    ]);
    assert.equal(badSize.status, 2);
    assert.match(badSize.stderr, /expected an integer >= 1/);
    const noTable = await runCli([
      'idempotency',
      'reap',
      '--database-url',
      url,
      '--table',
      'missing_table',
    ]);
    assert.equal(noTable.status, 2);
    assert.match(noTable.stderr, /missing_table/);
    const noModule = await runCli([
      'idempotency',
      'resume',
      '--database-url',
      url,
      '--operations',
      'package.json',
    ]);
    assert.equal(noModule.status, 2);
    assert.match(noModule.stderr, /operations|PhasedOperation|import attribute/i);
  });
});
