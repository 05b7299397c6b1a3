/**
 * `raceguard run` against real servers: the lab's inventory endpoint
 * (Fastify + PostgreSQL) with no artificial delay at all (gap 0), unsafe and
 * fixed; and a small server that stamps arrival times.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LabServer } from '../../packages/cli/src/lab/server.js';
import { stringify as stringifyYaml } from 'yaml';
import { inventory } from '../../packages/cli/src/lab/scenarios/inventory.js';
import { createLabServer } from '../../packages/cli/src/lab/server.js';
import { postgresDb } from '../../packages/cli/src/lab/sql.js';
import {
  atMostWinners,
  matchesSuccesses,
  neverNegative,
} from '../../packages/raceguard/src/run/invariants.js';
import {
  ARRIVAL_HEADER,
  RunCapError,
  runScenario,
} from '../../packages/cli/src/run/run-scenario.js';
import { defineScenario, ScenarioError } from '../../packages/raceguard/src/run/scenario.js';
import { runCli } from '../helpers/cli.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('raceguard run', () => {
  let db: TestDatabase;
  let lab: LabServer;
  let target: string;
  let databaseUrl: string;
  let dir: string;

  const scenarioFor = (strategy: string, trials = 10) =>
    defineScenario({
      name: `inventory/${strategy}`,
      target,
      databaseUrl,
      trials,
      setup: async ({ sql }) => {
        await sql('TRUNCATE inventory_orders');
        await sql('UPDATE inventory_products SET stock = 1, version = 0 WHERE id = 1');
      },
      burst: {
        count: 50,
        request: (i) => ({
          path: `/scenarios/inventory/${strategy}`,
          json: { productId: 1, buyer: `buyer-${i}` },
        }),
      },
      check: async ({ responses, sql }) => {
        const [product] = await sql('SELECT stock FROM inventory_products WHERE id = 1');
        const [orders] = await sql('SELECT count(*)::int AS n FROM inventory_orders');
        return [
          atMostWinners(responses, 1, (r) => r.status === 200),
          neverNegative(Number(product?.stock), 'stock'),
          matchesSuccesses(responses, {
            actual: Number(orders?.n),
            expected: (wins) => wins,
            what: 'orders',
          }),
        ];
      },
    });

  before(async () => {
    db = await openTestDatabase(40);
    const pool = postgresDb(db.pool);
    await inventory.createSchema(pool, 'unsafe');
    await inventory.seed(pool, { concurrency: 10 });
    lab = createLabServer({ pool, scenarios: [inventory], gapMs: 0 });
    target = await lab.listen({ host: '127.0.0.1', port: 0 });
    const u = new URL(db.url);
    u.searchParams.set('options', `-c search_path=${db.schema}`);
    databaseUrl = u.toString();
    dir = await mkdtemp(join(tmpdir(), 'raceguard-run-'));
  });
  after(async () => {
    await lab.close();
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('finds the oversell in the unsafe endpoint with no artificial delay, and explains it in HTTP terms', async () => {
    const report = await runScenario(scenarioFor('unsafe'));
    assert.equal(report.erroredTrials, 0, JSON.stringify(report.trialReports.find((t) => t.error)));
    assert.ok(
      report.violatedTrials > 0,
      `no race found in ${report.trials} trials: ${JSON.stringify(report.invariants)}`,
    );
    const winners = report.invariants['at-most-1-winners'];
    assert.ok(winners !== undefined && winners.violations > 0);
    assert.match(winners.example ?? '', /requests won where at most 1 may: request \d+ got 200/);
    assert.ok(report.sendSpreadMs.median < 20, `release took ${report.sendSpreadMs.median} ms`);
  });

  it('reports no false positive on the fix', async () => {
    const report = await runScenario(scenarioFor('atomic'));
    assert.equal(report.erroredTrials, 0);
    assert.equal(report.violatedTrials, 0, JSON.stringify(report.invariants));
    assert.equal(report.statuses['200'], report.trials);
  });

  it('refuses runs over the request cap before sending anything', async () => {
    await assert.rejects(
      runScenario(scenarioFor('unsafe', 1000), { maxRequests: 1000 }),
      RunCapError,
    );
  });

  it('a failing setup or teardown makes an errored trial, not a crash; teardown always runs', async () => {
    let teardowns = 0;
    const report = await runScenario(
      defineScenario({
        name: 'fragile',
        target,
        trials: 3,
        setup: ({ trial }) => {
          if (trial === 0) throw new Error('setup broke');
        },
        burst: { count: 5, request: { method: 'GET', path: '/health' } },
        check: ({ responses }) => [atMostWinners(responses, 5)],
        teardown: ({ trial }) => {
          teardowns += 1;
          if (trial === 1) throw new Error('teardown broke');
        },
      }),
      // Counting phases of the scored trials only.
      { warmup: false },
    );
    assert.equal(teardowns, 3);
    assert.deepEqual(
      report.trialReports.map((t) => t.error ?? 'ok'),
      ['setup threw: setup broke', 'teardown threw: teardown broke', 'ok'],
    );
    assert.equal(report.erroredTrials, 2);
    assert.equal(report.violatedTrials, 0);
  });

  it('fires one unscored warm-up burst before the first trial (setup and teardown around it), none with warmup: false', async () => {
    for (const [warmup, expected] of [
      [true, 4],
      [false, 3],
    ] as const) {
      let setups = 0;
      let teardowns = 0;
      let bursts = 0;
      const report = await runScenario(
        defineScenario({
          ...scenarioFor('atomic', 3),
          setup: async ({ sql }) => {
            setups += 1;
            await sql('TRUNCATE inventory_orders');
            await sql('UPDATE inventory_products SET stock = 1, version = 0 WHERE id = 1');
          },
          teardown: () => {
            teardowns += 1;
          },
          burst: {
            count: 10,
            request: (i) => {
              if (i === 0) bursts += 1;
              return {
                path: '/scenarios/inventory/atomic',
                json: { productId: 1, buyer: `b-${i}` },
              };
            },
          },
        }),
        { warmup },
      );
      assert.equal(report.trials, 3);
      assert.deepEqual([setups, teardowns, bursts], [expected, expected, expected], String(warmup));
    }
  });

  it('rejects bad definitions, naming the field', () => {
    assert.throws(
      () =>
        defineScenario({ ...scenarioFor('unsafe'), burst: { count: 0, request: { path: '/x' } } }),
      (error: unknown) => error instanceof ScenarioError && error.field === 'scenario.burst.count',
    );
    assert.throws(
      () => defineScenario({ ...scenarioFor('unsafe'), target: 'ftp://x' }),
      (error: unknown) => error instanceof ScenarioError && error.field === 'scenario.target',
    );
  });

  it('measures the arrival spread when the target stamps arrival times', async () => {
    const server = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.setHeader(ARRIVAL_HEADER, String(performance.timeOrigin + performance.now()));
        response.end('{}');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const report = await runScenario(
        defineScenario({
          name: 'stamped',
          target: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          trials: 3,
          burst: { count: 30, request: { path: '/x', json: {} } },
          check: ({ responses }) => [atMostWinners(responses, 30)],
        }),
      );
      assert.ok(report.arrivalSpreadMs !== null);
      assert.ok(report.arrivalSpreadMs.median >= 0 && report.arrivalSpreadMs.median < 100);
    } finally {
      server.close();
    }
  });

  it('CLI: a JSON scenario finds the race (exit 1) and passes on the fix (exit 0), with --json', async () => {
    const json = (strategy: string) => ({
      name: `json-${strategy}`,
      target,
      databaseUrl,
      trials: 5,
      setup: [
        { sql: 'TRUNCATE inventory_orders' },
        { sql: 'UPDATE inventory_products SET stock = 1 WHERE id = 1' },
      ],
      burst: {
        count: 50,
        request: {
          method: 'POST',
          path: `/scenarios/inventory/${strategy}`,
          json: { productId: 1, buyer: 'buyer-{i}' },
        },
      },
      check: [
        { atMostWinners: 1, status: [200] },
        {
          neverNegative: { sql: 'SELECT stock FROM inventory_products WHERE id = 1' },
          name: 'stock',
        },
        { unique: { sql: 'SELECT buyer FROM inventory_orders' }, name: 'buyers' },
      ],
    });
    await writeFile(join(dir, 'unsafe.json'), JSON.stringify(json('unsafe')));
    await writeFile(join(dir, 'atomic.json'), JSON.stringify(json('atomic')));
    const unsafe = await runCli(['run', join(dir, 'unsafe.json'), '--trials', '10']);
    assert.equal(unsafe.status, 1, unsafe.stderr);
    assert.match(unsafe.stdout, /RACE json-unsafe: at-most-1-winners violated/);
    const unsafeReports = await runCli([
      'run',
      join(dir, 'unsafe.json'),
      '--trials',
      '5',
      '--junit',
      join(dir, 'r.xml'),
      '--html',
      join(dir, 'r.html'),
    ]);
    assert.ok(unsafeReports.status === 1 || unsafeReports.status === 0, unsafeReports.stderr);
    const junit = await readFile(join(dir, 'r.xml'), 'utf8');
    assert.match(junit, /<testsuite name="json-unsafe" tests="3"/);
    assert.match(junit, /<testcase classname="json-unsafe" name="at-most-1-winners">/);
    if (unsafeReports.status === 1)
      assert.match(junit, /<failure message="violated in \d+\/5 trials" type="race">/);
    const html = await readFile(join(dir, 'r.html'), 'utf8');
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /<svg viewBox/);
    assert.doesNotMatch(html, /<script|https?:\/\/(?!127\.0\.0\.1)/);
    // The same scenario as YAML.
    await writeFile(join(dir, 'unsafe.yaml'), stringifyYaml(json('unsafe')));
    const yamlRun = await runCli(['run', join(dir, 'unsafe.yaml'), '--trials', '10']);
    assert.equal(yamlRun.status, 1, yamlRun.stderr);
    const fixed = await runCli(['run', join(dir, 'atomic.json'), '--json']);
    assert.equal(fixed.status, 0, fixed.stderr + fixed.stdout);
    const parsed = JSON.parse(fixed.stdout) as {
      scenarios: { name: string; violatedTrials: number }[];
    };
    assert.deepEqual(
      parsed.scenarios.map((s) => [s.name, s.violatedTrials]),
      [['json-atomic', 0]],
    );
  });

  it('CLI: a TypeScript scenario loads without a build step', async () => {
    const file = join(dir, 'fixed.scenario.ts');
    const src = new URL('../../packages/raceguard/src/run/', import.meta.url).pathname;
    await writeFile(
      file,
      `import { defineScenario } from '${src}scenario.ts';
import { atMostWinners } from '${src}invariants.ts';
const target: string = ${JSON.stringify(target)};
export default defineScenario({
  name: 'ts-health',
  target,
  trials: 2,
  burst: { count: 10, request: { method: 'GET', path: '/health' } },
  check: ({ responses }) => [atMostWinners(responses, 10)],
});
`,
    );
    const run = await runCli(['run', file]);
    assert.equal(run.status, 0, run.stderr + run.stdout);
    assert.match(run.stdout, /ts-health/);
  });

  it('CLI: bad scenario files and caps exit 2 with the field and what was expected', async () => {
    await writeFile(
      join(dir, 'bad.json'),
      JSON.stringify({
        name: 'bad',
        target,
        burst: { count: 0, request: { path: '/x' } },
        check: [{ atMostWinners: 1 }],
      }),
    );
    const bad = await runCli(['run', join(dir, 'bad.json')]);
    assert.equal(bad.status, 2);
    assert.match(
      bad.stdout,
      /bad\.json: burst\.count must be a number of at least 1, received 0 \(number\)/,
    );
    await writeFile(join(dir, 'broken.json'), '{ "name": ');
    const broken = await runCli(['run', join(dir, 'broken.json')]);
    assert.equal(broken.status, 2);
    assert.match(broken.stdout, /valid JSON/);
    const unknownType = await runCli(['run', join(dir, 'scenario.toml')]);
    assert.equal(unknownType.status, 2);
    assert.match(unknownType.stdout, /an existing file or directory/);
    await writeFile(join(dir, 'scenario.toml'), 'name = "x"');
    const wrongType = await runCli(['run', join(dir, 'scenario.toml')]);
    assert.equal(wrongType.status, 2);
    assert.match(wrongType.stdout, /\.ts, \.js, \.json or \.yaml/);
    await writeFile(join(dir, 'bad.yaml'), 'name: x\ntarget: [unclosed\n');
    const badYaml = await runCli(['run', join(dir, 'bad.yaml')]);
    assert.equal(badYaml.status, 2);
    assert.match(badYaml.stdout, /valid YAML/);
    await writeFile(
      join(dir, 'big.json'),
      JSON.stringify({
        name: 'big',
        target,
        trials: 100,
        burst: { count: 200, request: { path: '/health', method: 'GET' } },
        check: [{ atMostWinners: 1 }],
      }),
    );
    const big = await runCli(['run', join(dir, 'big.json')]);
    assert.equal(big.status, 2);
    assert.match(big.stdout, /exceeds the cap of 10000/);
  });
});
