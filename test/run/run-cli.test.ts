/**
 * `raceguard run` as users meet it: the real CLI in a child process against
 * a small HTTP API it has never seen (in-memory stock and balances, one racy
 * and one correct twin per endpoint), with JSON, YAML and TypeScript
 * scenario files, several at once, and the mistakes people make.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify as stringifyYaml } from 'yaml';
import type { ScenarioReport } from '../../packages/cli/src/run/run-scenario.js';
import { runCli } from '../helpers/cli.js';
import { startShop } from '../helpers/shop.js';

describe('raceguard run (CLI) on an API it has never seen', () => {
  const shop = startShop();
  let target: string;
  let dir: string;
  const json = (name: string, value: unknown) =>
    writeFile(join(dir, name), JSON.stringify(value, null, 2));
  const buy = (name: string, endpoint: string, extra: Record<string, unknown> = {}) => ({
    name,
    target,
    trials: 3,
    setup: [{ request: { method: 'POST', path: '/reset', json: { stock: 1 } } }],
    burst: {
      count: 20,
      request: { method: 'POST', path: endpoint, json: { buyer: 'b-{i}' } },
    },
    check: [
      { atMostWinners: 1, status: [201] },
      { neverNegative: { http: '/state', field: 'stock' }, name: 'stock' },
      { atMostEffects: 1, of: { http: '/state', field: 'orders.length' }, name: 'orders' },
      {
        matchesSuccesses: { http: '/state', field: 'stock' },
        perSuccess: -1,
        status: [201],
        name: 'stock',
      },
      {
        winnersMatch: { http: '/state', field: 'holder' },
        by: 'request.json.buyer',
        status: [201],
        name: 'holder',
      },
    ],
    ...extra,
  });

  before(async () => {
    shop.server.listen(0, '127.0.0.1');
    await new Promise((resolve) => shop.server.once('listening', resolve));
    target = `http://127.0.0.1:${(shop.server.address() as AddressInfo).port}`;
    dir = await mkdtemp(join(tmpdir(), 'raceguard-run-cli-'));
  });
  after(async () => {
    shop.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('JSON helpers: the racy endpoint violates every state invariant (exit 1), its twin none (exit 0)', async () => {
    await json('unsafe.json', buy('buy unsafe', '/buy/unsafe'));
    await json('safe.json', buy('buy safe', '/buy/safe'));
    const unsafe = await runCli(['run', join(dir, 'unsafe.json'), '--json']);
    assert.equal(unsafe.status, 1, unsafe.stderr + unsafe.stdout);
    const [report] = (JSON.parse(unsafe.stdout) as { scenarios: ScenarioReport[] }).scenarios;
    for (const invariant of [
      'at-most-1-winners',
      'stock-matches-successes',
      'at-most-orders',
      'winners-match-holder',
    ]) {
      assert.ok(report!.invariants[invariant]!.violations > 0, invariant);
    }
    const safe = await runCli(['run', join(dir, 'safe.json')]);
    assert.equal(safe.status, 0, safe.stdout);
    assert.match(safe.stdout, /no invariant violated in 3 trial\(s\) of 1 scenario\(s\)/);
  });

  it('conserved sums: money created by the racy transfer is caught, the atomic one passes', async () => {
    const transfer = (endpoint: string) => ({
      name: endpoint,
      target,
      trials: 2,
      burst: { count: 20, request: { method: 'POST', path: endpoint } },
      check: [
        { conserved: { http: '/state', field: 'total' }, name: 'money' },
        { matchesSuccesses: { http: '/state', field: 'a' }, perSuccess: -10, name: 'a' },
      ],
    });
    await json('t-unsafe.json', transfer('/transfer/unsafe'));
    await json('t-safe.json', transfer('/transfer/safe'));
    const unsafe = await runCli(['run', join(dir, 't-unsafe.json')]);
    assert.equal(unsafe.status, 1, unsafe.stdout);
    assert.match(
      unsafe.stdout,
      /money-conserved violated in 2\/2 trials; trial 1: money was \d+ before the burst and \d+ after: \d+ created/,
    );
    assert.match(
      unsafe.stdout,
      /20 request\(s\) reported success, so a should be -?\d+, but it is/,
    );
    const safe = await runCli(['run', join(dir, 't-safe.json')]);
    assert.equal(safe.status, 0, safe.stdout);
  });

  it('a burst that never reaches the endpoint is an error, not a pass (exit 2); --allow-no-success makes it a warning', async () => {
    await json('typo.json', buy('typo', '/buy/unsaef', { check: [{ atMostWinners: 1 }] }));
    const typo = await runCli(['run', join(dir, 'typo.json')]);
    assert.equal(typo.status, 2, typo.stdout);
    assert.match(typo.stdout, /no request succeeded: every response was 404/);
    assert.doesNotMatch(typo.stdout, /no invariant violated/);
    const allowed = await runCli(['run', join(dir, 'typo.json'), '--allow-no-success']);
    assert.equal(allowed.status, 0, allowed.stdout);
    assert.match(allowed.stdout, /WARNING typo: 3\/3 trial\(s\): no request succeeded/);
    // Nobody listening: every request fails at the transport.
    await json('refused.json', { ...buy('refused', '/buy/safe'), target: 'http://127.0.0.1:9' });
    const refused = await runCli(['run', join(dir, 'refused.json')]);
    assert.equal(refused.status, 2, refused.stdout);
    assert.match(refused.stdout, /ERROR refused .*(ECONNREFUSED|connect)/);
  });

  it('TypeScript: http() reads with GET by default; a value that is not a number is an error naming it, never a race', async () => {
    const file = join(dir, 'reads.scenario.ts');
    const run = new URL('../../packages/raceguard/src/run/index.ts', import.meta.url).pathname;
    await writeFile(
      file,
      `import { defineScenario, neverNegative } from ${JSON.stringify(run)};
const target = ${JSON.stringify(target)};
export default [
  defineScenario({
    name: 'reads state with GET',
    target,
    trials: 2,
    setup: async ({ http }) => { await http({ method: 'POST', path: '/reset', json: { stock: 5 } }); },
    burst: { count: 10, request: (i) => ({ path: '/buy/safe', json: { buyer: 'b' + i } }) },
    check: async ({ http }) => {
      const state = await http({ path: '/state' });
      return [neverNegative(Number((state.json as { stock: unknown }).stock), 'stock')];
    },
  }),
  defineScenario({
    name: 'reads a non-number',
    target,
    trials: 1,
    burst: { count: 5, request: { path: '/state' } },
    check: async ({ http }) => {
      const state = await http({ path: '/broken-state' });
      return [neverNegative(Number((state.json as { stock: unknown }).stock), 'stock')];
    },
  }),
  defineScenario({
    name: 'check throws',
    target,
    trials: 1,
    burst: { count: 5, request: { path: '/state' } },
    check: () => { throw new Error('the assertion library blew up'); },
  }),
  defineScenario({
    name: 'check returns nothing',
    target,
    trials: 1,
    burst: { count: 5, request: { path: '/state' } },
    check: () => [],
  }),
];
`,
    );
    const result = await runCli(['run', file]);
    assert.equal(result.status, 2, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      /reads a non-number.*check threw: neverNegative: stock must be a finite number, received NaN/,
    );
    assert.match(result.stdout, /check throws .*check threw: the assertion library blew up/);
    assert.match(result.stdout, /check returns nothing.*returned no verdicts/);
    assert.doesNotMatch(result.stdout, /no invariant violated/);
    const { scenarios } = JSON.parse((await runCli(['run', file, '--json'])).stdout) as {
      scenarios: ScenarioReport[];
    };
    const byName = new Map(scenarios.map((s) => [s.name, s]));
    // GET /state answered: a POST would have been a 405 and an errored check.
    assert.deepEqual(
      ['violatedTrials', 'erroredTrials'].map(
        (k) => byName.get('reads state with GET')![k as 'violatedTrials'],
      ),
      [0, 0],
    );
    // A check that throws keeps what the burst measured, and says which phase failed.
    const thrown = byName.get('check throws')!;
    assert.deepEqual(thrown.statuses, { 200: 5 });
    assert.equal(thrown.trialReports[0]!.phase, 'check');
    assert.equal(thrown.violatedTrials, 0);
  });

  it('several files: each reports on its own, reports are written, and the worst code wins', async () => {
    const many = join(dir, 'many');
    await mkdir(many);
    await writeFile(join(many, 'a-racy.yaml'), stringifyYaml(buy('racy', '/buy/unsafe')));
    await writeFile(
      join(many, 'b-unreachable.json'),
      JSON.stringify({ ...buy('unreachable', '/buy/safe'), target: 'http://127.0.0.1:9' }),
    );
    await writeFile(
      join(many, 'c-over-cap.json'),
      JSON.stringify({ ...buy('over cap', '/buy/safe'), trials: 600 }),
    );
    await writeFile(
      join(many, 'd-no-database.json'),
      JSON.stringify({ ...buy('no database', '/buy/safe'), setup: [{ sql: 'SELECT 1' }] }),
    );
    await writeFile(join(many, 'e-bad.json'), '{ "name": ');
    await writeFile(join(many, 'notes.txt'), 'not a scenario');
    const html = join(dir, 'many.html');
    const junit = join(dir, 'many.xml');
    const result = await runCli(['run', many, '--html', html, '--junit', junit], {
      DATABASE_URL: '',
    });
    assert.equal(result.status, 2, result.stdout + result.stderr);
    assert.match(result.stdout, /RACE racy: at-most-1-winners violated/);
    assert.match(result.stdout, /ERROR unreachable \(.*b-unreachable\.json\): .*127\.0\.0\.1:9/);
    assert.match(
      result.stdout,
      /ERROR over cap .*600 trials × 20 requests = 12000 exceeds the cap/,
    );
    assert.match(result.stdout, /ERROR no database .*databaseUrl must be set/);
    assert.match(result.stdout, /e-bad\.json:1:11 must be valid JSON/);
    assert.doesNotMatch(result.stdout, /notes\.txt/);
    assert.match(await readFile(html, 'utf8'), /racy[\s\S]*unreachable/);
    // JUnit: every scenario without a verdict is an <error>, never an empty green suite.
    const xml = await readFile(junit, 'utf8');
    assert.match(xml, /racy/);
    for (const name of ['unreachable', 'over cap', 'no database']) {
      assert.match(
        xml,
        new RegExp(
          `<testsuite name="${name}" tests="1" failures="0" errors="1">\\s*<testcase classname="${name}" name="scenario"><error message="[^"]+"`,
        ),
        name,
      );
    }
    assert.match(xml, /<error message="[^"]*e-bad\.json:1:11 must be valid JSON/);
    assert.doesNotMatch(xml, /tests="0"/);
  });

  it('an interrupted run (SIGTERM) names the scenarios without a verdict, in the text and the JUnit, and exits 130', async () => {
    // A target that accepts and never answers: the first scenario is still running when the signal comes.
    const silent = createServer((socket) => socket.on('error', () => undefined));
    silent.listen(0, '127.0.0.1');
    await new Promise((resolve) => silent.once('listening', resolve));
    const connected = new Promise((resolve) => silent.once('connection', resolve));
    const stalled = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const files = join(dir, 'interrupted');
    await mkdir(files);
    await writeFile(
      join(files, 'a.json'),
      JSON.stringify({ ...buy('first', '/buy/safe'), target: stalled }),
    );
    await writeFile(join(files, 'b.json'), JSON.stringify(buy('second', '/buy/safe')));
    const junit = join(dir, 'interrupted.xml');
    try {
      const { status, stdout } = await runCli(
        ['run', files, '--junit', junit],
        {},
        undefined,
        (child) => void connected.then(() => child.kill('SIGTERM')),
      );
      assert.equal(status, 130, stdout);
      assert.match(stdout, /ERROR first .*interrupted while it ran/);
      assert.match(stdout, /ERROR second .*not run: the run was interrupted/);
      assert.match(stdout, /no verdict for: first, second/);
      assert.doesNotMatch(stdout, /no invariant violated/);
      const xml = await readFile(junit, 'utf8');
      assert.match(
        xml,
        /<testcase classname="first" name="scenario"><error message="interrupted while it ran/,
      );
      assert.match(
        xml,
        /<testcase classname="second" name="scenario"><error message="not run: the run was interrupted/,
      );
    } finally {
      silent.close();
    }
  });

  it('refuses an output path it cannot write before the first request', async () => {
    await json('safe-again.json', buy('safe', '/buy/safe'));
    const before = shop.state.requests;
    const result = await runCli([
      'run',
      join(dir, 'safe-again.json'),
      '--html',
      join(dir, 'missing-dir', 'r.html'),
    ]);
    assert.equal(result.status, 2);
    assert.match(
      result.stderr,
      /--html must be a file path that can be written.*its directory does not exist/,
    );
    assert.equal(shop.state.requests, before);
  });

  it('options: --count overrides the burst size, --target must be a URL, h2c against HTTP/1.1 says so, the arrival header is configurable', async () => {
    await json('count.json', buy('count', '/buy/safe'));
    const counted = await runCli([
      'run',
      join(dir, 'count.json'),
      '--count',
      '7',
      '--trials',
      '1',
      '--arrival-header',
      'X-Arrived',
      '--json',
    ]);
    assert.equal(counted.status, 0, counted.stdout);
    const [report] = (JSON.parse(counted.stdout) as { scenarios: ScenarioReport[] }).scenarios;
    assert.deepEqual(report!.statuses, { 201: 1, 409: 6 });
    assert.ok(report!.arrivalSpreadMs !== null, 'arrival spread read from x-arrived');
    const badTarget = await runCli(['run', join(dir, 'count.json'), '--target', 'not-a-url']);
    assert.equal(badTarget.status, 2);
    assert.match(
      badTarget.stderr,
      /--target <url>.*expected an http:\/\/ or https:\/\/ URL, got "not-a-url"/,
    );
    const h2 = await runCli(['run', join(dir, 'count.json'), '--protocol', 'http2']);
    assert.equal(h2.status, 2);
    assert.match(h2.stdout, /does not speak h2c/);
  });

  it('validation messages say what was received and what is allowed', async () => {
    await json('zero.json', {
      ...buy('zero', '/buy/safe'),
      burst: { count: 0, request: { path: '/x' } },
    });
    await json('helper.json', { ...buy('helper', '/buy/safe'), check: [{ atMostWiners: 1 }] });
    await json('shape.json', { ...buy('shape', '/buy/safe'), check: [{ atMostWinners: -1 }] });
    const result = await runCli([
      'run',
      join(dir, 'zero.json'),
      join(dir, 'helper.json'),
      join(dir, 'shape.json'),
    ]);
    assert.equal(result.status, 2);
    assert.match(
      result.stdout,
      /zero\.json: burst\.count must be a number of at least 1, received 0 \(number\) \(line \d+, column \d+\)/,
    );
    // A usage error: the one-line error and where help is, not the whole help.
    const usage = await runCli(['run', '--bogus']);
    assert.equal(usage.status, 2);
    assert.equal(
      usage.stderr.trim(),
      "error: unknown option '--bogus'\n(raceguard run --help for usage)",
    );
    assert.match(
      result.stdout,
      /helper\.json: check #1 must be an object naming one check: atMostWinners, neverNegative, exactly, atMostEffects, unique, conserved, matchesSuccesses, winnersMatch, received an object with keys "atMostWiners"/,
    );
    assert.match(
      result.stdout,
      /shape\.json: check #1\.atMostWinners must be a number of at least 0, received -1 \(number\)/,
    );
    // The table wraps long names to fit 120 columns, rows numbered from 1.
    const table = result.stdout.slice(0, result.stdout.indexOf('\n\n'));
    assert.deepEqual(
      table.split('\n').filter((line) => line.length > 120),
      [],
    );
    assert.match(table, /^1 +\S/m);
  });
});
