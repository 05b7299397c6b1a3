/**
 * `raceguard advise`: the candidate fixes measured on a copy of the user's
 * own row, on PostgreSQL and on MariaDB; the unsafe read-then-write is the
 * control that shows the check catches a wrong fix.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { advise } from '../../packages/cli/src/lab/advise.js';
import { runCli } from '../helpers/cli.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestMysql, type TestMysql } from '../helpers/mysql.js';

const FIXES = ['atomic', 'pessimistic', 'optimistic', 'serializable', 'advisory-lock'];

describe('raceguard advise', () => {
  let db: TestDatabase;
  let my: TestMysql;
  before(async () => {
    db = await openTestDatabase(4);
    await db.pool
      .query(`CREATE TABLE shop_products (id int PRIMARY KEY, stock int NOT NULL CHECK (stock >= 0),
      name text NOT NULL, version int NOT NULL DEFAULT 0)`);
    await db.pool.query(
      `INSERT INTO shop_products VALUES (1, 7, 'last units', 0), (2, 3, 'other', 0)`,
    );
    my = await openTestMysql(4);
    await my.pool.query(
      'CREATE TABLE wallets (owner varchar(40) PRIMARY KEY, balance bigint NOT NULL) ENGINE=InnoDB',
    );
    await my.pool.query(`INSERT INTO wallets VALUES ('ada', 500), ('bob', 20)`);
  });
  after(async () => {
    await db.close();
    await my.close();
  });

  it('on PostgreSQL: every fix correct and ranked, the read-then-write caught losing updates; the table itself untouched', async () => {
    const report = await advise({
      databaseUrl: db.url,
      table: `${db.schema}.shop_products`,
      key: { id: '1' },
      column: 'stock',
      concurrency: 16,
      durationMs: 400,
    });
    const by = new Map(report.results.map((r) => [r.strategy, r]));
    assert.equal(by.get('unsafe')?.verdict, 'wrong', JSON.stringify(by.get('unsafe')));
    assert.match(
      by.get('unsafe')?.reason ?? '',
      /lost updates: \d+ accepted write\(s\) left no trace/,
    );
    for (const fix of [...FIXES, 'combined']) {
      assert.equal(
        by.get(fix as never)?.verdict,
        'correct',
        `${fix}: ${JSON.stringify(by.get(fix as never))}`,
      );
    }
    const correct = report.results.filter((r) => r.verdict === 'correct');
    assert.deepEqual(
      correct.map((r) => r.rank),
      correct.map((_, i) => i + 1),
    );
    assert.ok(correct.every((r, i) => i === 0 || (correct[i - 1]?.opsPerSec ?? 0) >= r.opsPerSec));
    assert.equal(report.recommendation, correct[0]?.strategy);
    assert.equal(report.addedVersionColumn, false);
    const { rows } = await db.pool.query('SELECT id, stock FROM shop_products ORDER BY id');
    assert.deepEqual(rows, [
      { id: 1, stock: 7 },
      { id: 2, stock: 3 },
    ]);
  });

  it('on MariaDB: the same verdicts (no combined there); a version column is added to the copy only', async () => {
    const report = await advise({
      databaseUrl: `mysql://root@${my.connection.host}:${my.connection.port}/${my.database}`,
      table: 'wallets',
      key: { owner: 'ada' },
      column: 'balance',
      concurrency: 16,
      reads: 0.3,
      durationMs: 400,
    });
    const by = new Map(report.results.map((r) => [r.strategy, r]));
    assert.equal(by.has('combined'), false);
    assert.equal(by.get('unsafe')?.verdict, 'wrong', JSON.stringify(by.get('unsafe')));
    for (const fix of FIXES) {
      assert.equal(
        by.get(fix as never)?.verdict,
        'correct',
        `${fix}: ${JSON.stringify(by.get(fix as never))}`,
      );
    }
    assert.equal(report.addedVersionColumn, true);
    const [columns] = (await my.pool.query('SHOW COLUMNS FROM wallets')) as unknown as [
      { Field: string }[],
    ];
    assert.deepEqual(
      columns.map((c) => c.Field),
      ['owner', 'balance'],
    );
  });

  it('CLI: prints the ranking and exits 0; a key matching no row and a missing option exit 2', async () => {
    const cli = (...args: string[]) => runCli(['advise', ...args]);
    const base = [
      '--database',
      db.url,
      '--table',
      `${db.schema}.shop_products`,
      '--column',
      'stock',
    ];
    const run = await cli(
      ...base,
      '--key',
      'id=2',
      '-c',
      '8',
      '--duration-ms',
      '200',
      '--strategy',
      'unsafe,atomic',
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /rank\s+strategy\s+verdict/);
    assert.match(run.stdout, /fastest correct fix on this workload: atomic/);
    const json = await cli(
      ...base,
      '--key',
      'id=2',
      '-c',
      '4',
      '--duration-ms',
      '200',
      '--strategy',
      'atomic',
      '--json',
    );
    assert.equal(json.status, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as { recommendation: string }).recommendation, 'atomic');
    const missing = await cli(...base, '--key', 'id=99', '--duration-ms', '200');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /identify one row .*\(0 matched\)/);
    assert.match(run.stdout.replace(/\s+/g, ' '), /the copy's stock starts at 1,000,000,000/);
    // The writes take from an integer column: text, or a column that is not there, exit 2.
    const text = await cli(...base.slice(0, -1), 'name', '--key', 'id=2', '--duration-ms', '200');
    assert.equal(text.status, 2, text.stdout);
    assert.match(text.stderr, /column must be an integer column .*shop_products\.name is text/);
    assert.doesNotMatch(text.stdout, /fastest correct fix/);
    const absent = await cli(...base.slice(0, -1), 'nope', '--key', 'id=2', '--duration-ms', '200');
    assert.equal(absent.status, 2);
    assert.match(absent.stderr, /column must be a column of/);
    await assert.rejects(
      advise({
        databaseUrl: `mysql://root@${my.connection.host}:${my.connection.port}/${my.database}`,
        table: 'wallets',
        key: { owner: 'ada' },
        column: 'owner',
        durationMs: 200,
      }),
      /an integer column .*wallets\.owner is varchar/,
    );
    const usage = await cli('--database', db.url, '--key', 'id=1', '--column', 'stock');
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--table/);
  });
});
