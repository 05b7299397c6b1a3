/**
 * The race lab on MySQL / MariaDB (`raceguard lab --database mysql://...`):
 * the same scenarios, written once, with each fix in MySQL's own terms.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { runLab } from '../../packages/cli/src/lab/run-lab.js';
import { serveLab } from '../../packages/cli/src/lab/serve-lab.js';
import {
  CACHE_SCENARIOS,
  CLOCK_SCENARIOS,
  SCENARIOS,
} from '../../packages/cli/src/lab/scenarios/index.js';
import { appliesTo, STRATEGIES } from '../../packages/cli/src/lab/scenario.js';
import { runCli } from '../helpers/cli.js';
import { useMysqlServer } from '../helpers/mysql.js';

let server: { url: string; stop?: () => Promise<void> };
before(async () => {
  server = await useMysqlServer();
});
after(async () => {
  await server.stop?.();
});

/** The lab's scratch databases on the server. */
async function labDatabases(): Promise<string[]> {
  const connection = await mysql.createConnection(server.url);
  try {
    const [rows] = await connection.query("SHOW DATABASES LIKE 'raceguard\\_lab\\_%'");
    return (rows as Record<string, string>[]).map((row) => Object.values(row)[0] as string);
  } finally {
    await connection.end();
  }
}

describe('race lab on MariaDB', () => {
  it('catches every unsafe variant and shows every fix clean; the PostgreSQL-only shapes say why they were skipped', async () => {
    const before_ = await labDatabases();
    const report = await runLab({ databaseUrl: server.url, concurrency: 40, trials: 2, gapMs: 2 });
    assert.equal(report.database, 'mysql');
    assert.deepEqual(
      report.skipped.map((s) => s.scenario),
      ['order-events', 'profile-read'],
    );
    for (const { reason } of report.skipped) assert.match(reason, /^runs on PostgreSQL only: /);
    const shapes = [...SCENARIOS, ...CACHE_SCENARIOS, ...CLOCK_SCENARIOS];
    assert.equal(
      report.results.length,
      shapes.reduce((n, s) => n + STRATEGIES.filter((x) => appliesTo(s, x)).length, 0),
    );
    for (const scenario of shapes) {
      const unsafe = report.results.find(
        (r) => r.scenario === scenario.name && r.strategy === 'unsafe',
      );
      assert.ok(
        unsafe && unsafe.anomalousTrials === unsafe.trials,
        `unsafe ${scenario.name} was not caught in every trial: ${JSON.stringify(unsafe)}`,
      );
    }
    const dirty = report.results.filter(
      (r) => !report.unsafeStrategies.includes(r.strategy) && r.anomalousTrials > 0,
    );
    assert.deepEqual(dirty, [], 'every fix must be clean');
    assert.equal(report.fixesClean, true);
    // 40 buyers, 4 units, 2 trials: every fix sells exactly 8, none answers 500.
    for (const r of report.results.filter(
      (x) => x.scenario === 'inventory' && x.strategy !== 'unsafe',
    )) {
      assert.equal(r.accepted, 8, `${r.strategy} sold ${r.accepted}`);
      assert.equal(r.errors, 0, r.strategy);
    }
    // InnoDB's SERIALIZABLE turns reads into shared locks: the upgrades deadlock (1213) and re-run.
    assert.ok(
      report.results.some((r) => r.strategy === 'serializable' && r.retries > 0),
      JSON.stringify(report.results.filter((r) => r.strategy === 'serializable')),
    );
    // Every trial's tables lived in a database of the lab's own, dropped at the end.
    assert.deepEqual(await labDatabases(), before_);
  });

  it('two lab servers: an in-process mutex fails; GET_LOCK, the MySQL lease lock and Redis hold', async () => {
    const report = await runLab({
      databaseUrl: server.url,
      concurrency: 40,
      trials: 2,
      gapMs: 2,
      servers: 2,
      scenarios: ['counter', 'bank'],
      strategies: ['local-mutex', 'advisory-lock', 'lease-lock', 'redis-lock'],
    });
    const byStrategy = (strategy: string) => report.results.filter((r) => r.strategy === strategy);
    assert.ok(
      byStrategy('local-mutex').every((r) => r.anomalousTrials > 0),
      JSON.stringify(byStrategy('local-mutex')),
    );
    for (const strategy of ['advisory-lock', 'lease-lock', 'redis-lock']) {
      const results = byStrategy(strategy);
      assert.deepEqual(
        results.map((r) => [r.anomalousTrials, r.errors, r.conflicts]),
        [
          [0, 0, 0],
          [0, 0, 0],
        ],
        `${strategy}: ${JSON.stringify(results)}`,
      );
    }
    assert.equal(report.fixesClean, true);
  });

  it('serves the lab on MariaDB: reset, a burst, the invariants through the check route', async () => {
    await using lab = await serveLab({ databaseUrl: server.url, gapMs: 2 });
    assert.equal(lab.dialect, 'mysql');
    assert.match(lab.databaseUrl, new RegExp(`/${lab.schema}$`));
    const post = async (path: string, body: unknown) => {
      const response = await fetch(`${lab.url}${path}`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    for (const [strategy, caught] of [
      ['unsafe', true],
      ['advisory-lock', false],
    ] as const) {
      const reset = await post(`/lab/coupon/${strategy}/reset`, { concurrency: 30 });
      const requests = reset.body.requests as Record<string, unknown>[];
      const responses = await Promise.all(
        requests.map(async (request) => ({
          ...(await post(`/scenarios/coupon/${strategy}`, request)),
          request,
        })),
      );
      const { body } = await post('/lab/coupon/check', { concurrency: 30, responses });
      const anomalies = body.anomalies as Record<string, number>;
      assert.equal(
        Object.keys(anomalies).length > 0,
        caught,
        `${strategy}: ${JSON.stringify(anomalies)}`,
      );
    }
  });
});

describe('raceguard lab --database mysql://... (CLI)', () => {
  const cli = (...args: string[]) => runCli(['lab', ...args]);

  it('runs on MariaDB, says so, and exits 0 when the fixes are clean', async () => {
    const run = await cli(
      '--database',
      server.url,
      '-c',
      '20',
      '-t',
      '1',
      '-s',
      'payment,two-editors',
      '--strategy',
      'unsafe,atomic,optimistic,idempotency-key',
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /connecting to MySQL \/ MariaDB at --database/);
    assert.match(run.stderr, /MySQL \/ MariaDB ready \(by URL, database raceguard_lab_/);
    assert.match(run.stdout, /payment\s+idempotency-/);
    assert.match(run.stdout, /unsafe variants caught: 2\/2/);
    assert.match(run.stdout, /MySQL \/ MariaDB; 20 concurrent requests/);
  });

  it('exits 2 on a URL of no known database, and 2 when the server refuses the user', async () => {
    const bad = await cli('--database', 'ftp://127.0.0.1/x');
    assert.equal(bad.status, 2);
    assert.match(
      bad.stderr,
      /expected a postgres:\/\/, postgresql:\/\/, mysql:\/\/ or mariadb:\/\/ URL/,
    );
    const address = new URL(server.url);
    const refused = await cli(
      '--database',
      `mysql://raceguard_nobody:wrong@${address.host}/`,
      '-c',
      '2',
      '-t',
      '1',
      '-s',
      'counter',
    );
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /Access denied/);
  });
});
