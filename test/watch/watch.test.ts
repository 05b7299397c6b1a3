/**
 * `raceguard watch` against a database the lab's unsafe variant broke and
 * one its fix kept clean, as users run it: the CLI in a child process, its
 * exit codes, its log and its metrics scraped over HTTP.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { serveLab, type ServedLab } from '../../packages/cli/src/lab/serve-lab.js';
import { parseWatchConfig, runChecks } from '../../packages/cli/src/watch/watch.js';
import { runCli } from '../helpers/cli.js';

/** `raceguard watch <args>` without DATABASE_URL. */
const watch = (args: readonly string[], onStderr?: Parameters<typeof runCli>[2]) =>
  runCli(['watch', ...args], { DATABASE_URL: '' }, onStderr);

/**
 * A stderr hook that, once the command prints its metrics address, waits
 * `afterMs`, scrapes the metrics into `into.text`, and interrupts the command.
 */
function scrapeThenStop(
  afterMs: number,
  into: { text: string },
  signal: 'SIGINT' | 'SIGTERM' = 'SIGINT',
): Parameters<typeof runCli>[2] {
  return (stderr, child) => {
    const match = /metrics at (http:\/\/\S+)/.exec(stderr);
    if (match === null || into.text !== '') return;
    into.text = 'pending';
    setTimeout(() => {
      void fetch(match[1] as string)
        .then((response) => response.text())
        .then((text) => {
          into.text = text;
          child.kill(signal);
        });
    }, afterMs);
  };
}

describe('raceguard watch', { timeout: 180_000 }, () => {
  let lab: ServedLab;
  let dir: string;
  let file: string;
  const post = async (path: string, body: unknown) =>
    (
      await fetch(`${lab.url}${path}`, { method: 'POST', body: JSON.stringify(body) })
    ).json() as Promise<Record<string, unknown>>;
  /** Reset the inventory for `strategy` and fire 40 buyers at 4 units at once. */
  const burst = async (strategy: string) => {
    const { requests } = (await post(`/lab/inventory/${strategy}/reset`, { concurrency: 40 })) as {
      requests: unknown[];
    };
    await Promise.all(requests.map((request) => post(`/scenarios/inventory/${strategy}`, request)));
  };

  before(async () => {
    lab = await serveLab({
      gapMs: 2,
      ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
    });
    dir = await mkdtemp(join(tmpdir(), 'raceguard-watch-'));
    file = join(dir, 'shop.yaml');
    await writeFile(
      file,
      [
        'statementTimeoutMs: 2000',
        'checks:',
        '  - name: stock never negative',
        '    neverNegative: { sql: "SELECT stock, id FROM inventory_products" }',
        '  - name: at most 4 orders',
        '    atMostEffects: 4',
        '    of: { sql: "SELECT count(*) FROM inventory_orders" }',
        '  - name: one order per buyer',
        '    unique: { sql: "SELECT buyer FROM inventory_orders" }',
        '  - name: units conserved',
        '    conserved: { sql: "SELECT stock + (SELECT count(*) FROM inventory_orders) FROM inventory_products" }',
        '    total: 4',
      ].join('\n'),
    );
  });
  after(() => lab.close());

  it('reports the invariants the unsafe variant broke (exit 1, the offending rows), and is quiet on the fix (exit 0)', async () => {
    await burst('unsafe');
    const broken = await watch([file, '--once', '--database', lab.databaseUrl]);
    assert.equal(broken.status, 1, broken.stderr);
    assert.match(broken.stdout, /stock never negative\s+neverNegative\s+violated/);
    assert.match(broken.stdout, /at most 4 orders\s+atMostEffects\s+violated/);
    assert.match(broken.stdout, /one order per buyer\s+unique\s+ok/);
    assert.match(broken.stdout, /units conserved\s+conserved\s+ok/);
    assert.match(
      broken.stderr,
      /VIOLATED stock never negative: 1 negative value\(s\); rows: \[\{"stock":-\d+,"id":1\}\]/,
    );
    await burst('atomic');
    const clean = await watch([file, '--once', '--json', '--database', lab.databaseUrl]);
    assert.equal(clean.status, 0, clean.stderr);
    const { results } = JSON.parse(clean.stdout) as { results: { status: string }[] };
    assert.deepEqual(
      results.map((r) => r.status),
      ['ok', 'ok', 'ok', 'ok'],
    );
  });

  it('serves the verdicts as Prometheus metrics and logs a violation once, however many rounds see it', async () => {
    await burst('unsafe');
    const scraped = { text: '' };
    const run = await watch(
      [file, '--database', lab.databaseUrl, '--interval-ms', '150', '--port', '0'],
      scrapeThenStop(800, scraped),
    );
    assert.equal(run.status, 130, run.stderr);
    assert.match(
      scraped.text,
      /raceguard_watch_violated\{check="stock never negative",kind="neverNegative"\} 1/,
    );
    assert.match(
      scraped.text,
      /raceguard_watch_violated\{check="one order per buyer",kind="unique"\} 0/,
    );
    assert.match(scraped.text, /raceguard_watch_up 1/);
    assert.ok(
      Number(/raceguard_watch_rounds_total (\d+)/.exec(scraped.text)?.[1]) >= 3,
      scraped.text,
    );
    assert.equal(run.stderr.match(/VIOLATED stock never negative/g)?.length, 1, run.stderr);
    // Stopped like a service (SIGTERM): a clean exit, 0.
    const stopped = await watch(
      [file, '--database', lab.databaseUrl, '--interval-ms', '150', '--port', '0'],
      scrapeThenStop(300, { text: '' }, 'SIGTERM'),
    );
    assert.equal(stopped.status, 0, stopped.stderr);
    assert.match(stopped.stderr, /stopped \(SIGTERM\)/);
  });

  it('a query that writes is refused by the READ ONLY transaction and writes nothing; a slow one is cancelled (exit 2)', async () => {
    await burst('atomic');
    const writes = join(dir, 'writes.json');
    await writeFile(
      writes,
      JSON.stringify({
        statementTimeoutMs: 200,
        checks: [
          {
            name: 'sneaky',
            neverNegative: { sql: 'UPDATE inventory_products SET stock = 99 RETURNING stock' },
          },
          { name: 'slow', neverNegative: { sql: 'SELECT 1 FROM pg_sleep(3)' } },
        ],
      }),
    );
    const run = await watch([writes, '--once', '--database', lab.databaseUrl]);
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stdout, /sneaky.*error.*READ ONLY transaction refused it/);
    assert.match(run.stdout, /slow.*error.*statement timeout \(200 ms\)/);
    const pool = new pg.Pool({ connectionString: lab.databaseUrl, max: 1 });
    const { rows } = await pool.query('SELECT stock FROM inventory_products');
    await pool.end();
    assert.deepEqual(rows, [{ stock: 0 }]);
  });

  it('regression: the server keeps a check read-only whatever its text (COMMIT; UPDATE, COMMIT; DELETE, COMMIT; pg_sleep, set_config), and a session lock does not outlive the check', async () => {
    await burst('atomic');
    const attacks = join(dir, 'attacks.json');
    await writeFile(
      attacks,
      JSON.stringify({
        statementTimeoutMs: 500,
        checks: [
          {
            name: 'commit-update',
            neverNegative: {
              sql: 'SELECT stock FROM inventory_products; COMMIT; UPDATE inventory_products SET stock = -7',
            },
          },
          {
            name: 'commit-delete',
            neverNegative: { sql: 'SELECT 1; COMMIT; DELETE FROM inventory_orders' },
          },
          { name: 'commit-sleep', neverNegative: { sql: 'COMMIT; SELECT 1 FROM pg_sleep(30)' } },
          {
            name: 'timeout-off',
            neverNegative: {
              sql: "SELECT 1 FROM (SELECT set_config('statement_timeout', '0', true)) s, pg_sleep(30)",
            },
          },
        ],
      }),
    );
    const started = performance.now();
    const run = await watch([attacks, '--once', '--database', lab.databaseUrl]);
    // Each sleep is 30 s: a check the 500 ms timeout did not stop would take
    // that long; a loaded machine's process start-up does not come close.
    assert.ok(
      performance.now() - started < 15_000,
      `took ${(performance.now() - started).toFixed(0)} ms`,
    );
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stdout, /commit-update.*error.*single SQL statement/);
    assert.match(run.stdout, /commit-delete.*error.*single SQL statement/);
    assert.match(run.stdout, /commit-sleep.*error.*single SQL statement/);
    assert.match(run.stdout, /timeout-off.*error.*statement timeout \(500 ms\)/);
    const pool = new pg.Pool({ connectionString: lab.databaseUrl, max: 1 });
    try {
      const { rows } = await pool.query('SELECT stock FROM inventory_products');
      assert.deepEqual(rows, [{ stock: 0 }]);
      const { rows: orders } = await pool.query('SELECT count(*)::int AS n FROM inventory_orders');
      assert.deepEqual(orders, [{ n: 4 }]);
      // A session advisory lock taken by a check is gone before the connection is reused.
      const config = parseWatchConfig(
        {
          checks: [
            { name: 'lock', neverNegative: { sql: 'SELECT 1 FROM pg_advisory_lock(4242)' } },
          ],
        },
        'inline',
      );
      const results = await runChecks(pool, config);
      assert.equal(results[0]?.status, 'ok');
      const { rows: held } = await pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
      );
      assert.deepEqual(held, [{ n: 0 }]);
    } finally {
      await pool.end();
    }
  });

  it('an unreachable database is reported, retried, never a crash; bad files name the field', async () => {
    const once = await watch([file, '--once', '--database', 'postgres://127.0.0.1:1/none']);
    assert.equal(once.status, 2);
    assert.match(once.stdout, /cannot reach the database/);
    const scraped = { text: '' };
    const looping = await watch(
      [file, '--database', 'postgres://127.0.0.1:1/none', '--interval-ms', '5000', '--port', '0'],
      scrapeThenStop(1500, scraped),
    );
    assert.equal(looping.status, 130, looping.stderr);
    assert.match(scraped.text, /raceguard_watch_up 0/);
    // Backoff, not the 5 s interval: more than one round in 1.5 s.
    assert.ok(
      Number(/raceguard_watch_rounds_total (\d+)/.exec(scraped.text)?.[1]) >= 2,
      scraped.text,
    );
    assert.equal(looping.stderr.match(/cannot check stock never negative/g)?.length, 1);
    assert.throws(
      () => parseWatchConfig({ checks: [{ neverNegative: { sql: 1 } }] }, 'shop.yaml'),
      /shop\.yaml: checks\[0\]\.neverNegative\.sql/,
    );
    assert.throws(
      () => parseWatchConfig({ checks: [{ sometimes: {} }] }),
      /one check: neverNegative/,
    );
    assert.throws(() => parseWatchConfig({ checks: [] }), /checks/);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'checks:\n  - atMostN: lots\n    of: { sql: "SELECT 1" }\n');
    const refused = await watch([bad, '--once', '--database', lab.databaseUrl]);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /checks\[0\]\.atMostN.*\(line 2, column 14\)/);
    // The old spelling still parses, as the same check.
    const legacy = join(dir, 'legacy.yaml');
    await writeFile(
      legacy,
      'checks:\n  - atMostN: 4\n    of: { sql: "SELECT count(*) FROM inventory_orders" }\n',
    );
    const old = await watch([legacy, '--once', '--database', lab.databaseUrl]);
    assert.match(old.stdout, /atMostEffects/, old.stderr);
  });
});
