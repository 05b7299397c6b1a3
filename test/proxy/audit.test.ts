/**
 * `raceguard audit` against a test API with a racy handler and a correct
 * twin for each shape: one sequential pass flags every racy one with the
 * right anomaly and none of the twins; a request with no SQL is `unknown`;
 * `--confirm` proves the flagged races with a burst while the proxy holds
 * back the read (and the twins' bursts stay clean: the checks can pass).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ScenarioDefinition, Verdict } from '../../packages/raceguard/src/run/index.js';
import { auditScenario } from '../../packages/cli/src/proxy/audit.js';
import { startPgProxy, type PgProxy } from '../../packages/cli/src/proxy/proxy.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runScenario } from '../../packages/cli/src/run/run-scenario.js';
import { runCli } from '../helpers/cli.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { SCHEMA, startAuditApi } from './audit-api.js';
import { serveLab } from '../../packages/cli/src/lab/serve-lab.js';
import { labScenarios } from '../../packages/cli/src/lab/as-scenarios.js';

type Sql = (text: string, values?: readonly unknown[]) => Promise<Record<string, unknown>[]>;

interface Case {
  readonly path: string;
  readonly expected: string; // an anomaly, 'safe' or 'unknown'
  readonly setup: string;
  readonly body?: (i: number) => Record<string, unknown>;
  readonly check: (sql: Sql, successes: number) => Promise<Verdict>;
}

const one = async (sql: Sql, text: string): Promise<number> =>
  Number(Object.values((await sql(text))[0] ?? {})[0]);
const verdict = (invariant: string, ok: boolean, detail: string): Verdict => ({
  invariant,
  ok,
  detail,
});

const stockConserved = async (sql: Sql, successes: number): Promise<Verdict> => {
  const stock = await one(sql, 'SELECT stock FROM products WHERE id = 1');
  return verdict(
    'every sale counted',
    100 - stock === successes,
    `stock ${stock}, ${successes} sales`,
  );
};
const BUY = 'TRUNCATE products; INSERT INTO products VALUES (1, 100)';

const CASES: readonly Case[] = [
  { path: '/buy/autocommit', expected: 'lost-update', setup: BUY, check: stockConserved },
  { path: '/buy/read-committed', expected: 'lost-update', setup: BUY, check: stockConserved },
  { path: '/buy/for-update', expected: 'safe', setup: BUY, check: stockConserved },
  { path: '/buy/repeatable-read', expected: 'safe', setup: BUY, check: stockConserved },
  {
    path: '/buy/check-then-act',
    expected: 'check-then-act',
    setup: 'TRUNCATE products; INSERT INTO products VALUES (1, 1)',
    check: async (sql) => {
      const stock = await one(sql, 'SELECT stock FROM products WHERE id = 1');
      return verdict('never negative', stock >= 0, `stock ${stock}`);
    },
  },
  {
    path: '/buy/guarded',
    expected: 'safe',
    setup: 'TRUNCATE products; INSERT INTO products VALUES (1, 1)',
    check: async (sql) => {
      const stock = await one(sql, 'SELECT stock FROM products WHERE id = 1');
      return verdict('never negative', stock >= 0, `stock ${stock}`);
    },
  },
  ...(['/signup', '/signup/unique'] as const).map((path): Case => ({
    path,
    expected: path === '/signup' ? 'check-then-insert' : 'safe',
    setup: 'TRUNCATE users, users_unique',
    body: () => ({ email: 'ann@example.com' }),
    check: async (sql) => {
      const table = path === '/signup' ? 'users' : 'users_unique';
      const n = await one(sql, `SELECT count(*) FROM ${table} WHERE email = 'ann@example.com'`);
      return verdict('one account per email', n <= 1, `${n} accounts`);
    },
  })),
  ...(['/book', '/book/serializable'] as const).map((path): Case => ({
    path,
    expected: path === '/book' ? 'capped-count' : 'safe',
    setup: 'TRUNCATE bookings',
    check: async (sql) => {
      const n = await one(sql, 'SELECT count(*) FROM bookings WHERE show = 1');
      return verdict('at most 3 bookings', n <= 3, `${n} bookings`);
    },
  })),
  ...(['/off-call/repeatable-read', '/off-call/serializable'] as const).map((path): Case => ({
    path,
    expected: path.endsWith('repeatable-read') ? 'write-skew' : 'safe',
    setup: "TRUNCATE doctors; INSERT INTO doctors VALUES ('alice', true), ('bob', true)",
    body: (i) => ({ name: i % 2 === 0 ? 'alice' : 'bob' }),
    check: async (sql) => {
      const n = await one(sql, 'SELECT count(*) FROM doctors WHERE on_call');
      return verdict('someone on call', n >= 1, `${n} on call`);
    },
  })),
  ...(['/doc/tag', '/doc/tag-versioned'] as const).map((path): Case => ({
    path,
    expected: path === '/doc/tag' ? 'document-overwrite' : 'safe',
    setup: `TRUNCATE docs; INSERT INTO docs VALUES (1, '{"tags": []}', 1)`,
    body: (i) => ({ tag: `t${i}` }),
    check: async (sql, successes) => {
      const n = await one(sql, "SELECT jsonb_array_length(doc->'tags') FROM docs WHERE id = 1");
      return verdict('every tag kept', n === successes, `${n} tags, ${successes} successes`);
    },
  })),
  {
    path: '/pay',
    expected: 'duplicate-request',
    setup: 'TRUNCATE payments',
    body: () => ({ requestId: 'r-1' }),
    check: async (sql) => {
      const n = await one(sql, "SELECT count(*) FROM payments WHERE request_id = 'r-1'");
      return verdict('charged once', n <= 1, `${n} charges`);
    },
  },
  {
    path: '/pay/on-conflict',
    expected: 'safe',
    setup: 'TRUNCATE users_unique',
    body: () => ({ requestId: 'r-1' }),
    check: async (sql) => {
      const n = await one(sql, "SELECT count(*) FROM users_unique WHERE email = 'r-1'");
      return verdict('charged once', n <= 1, `${n} charges`);
    },
  },
  ...(
    [
      ['/orm/buy', 'lost-update'],
      ['/orm/buy-for-update', 'safe'],
      ['/orm/buy-guarded', 'safe'],
      ['/orm/buy-raceguard', 'safe'],
    ] as const
  ).map(([path, expected]): Case => ({ path, expected, setup: BUY, check: stockConserved })),
  {
    path: '/coupon/redeem',
    expected: 'check-then-act',
    setup: "TRUNCATE coupons; INSERT INTO coupons VALUES ('SAVE10', 0, 5)",
    check: async (sql, successes) => {
      const used = await one(sql, "SELECT used FROM coupons WHERE code = 'SAVE10'");
      return verdict(
        'at most 5 redemptions',
        successes <= 5,
        `${successes} accepted, ${used} used`,
      );
    },
  },
  {
    path: '/memory',
    expected: 'unknown',
    setup: 'SELECT 1',
    check: () => Promise.resolve(verdict('nothing', true, 'in memory')),
  },
];

describe('raceguard audit', { timeout: 300_000 }, () => {
  let db: TestDatabase;
  let proxy: PgProxy;
  let api: Awaited<ReturnType<typeof startAuditApi>>;
  let appPool: pg.Pool;
  let directUrl: string;
  before(async () => {
    db = await openTestDatabase(5);
    await db.pool.query(SCHEMA);
    const upstream = new URL(db.url);
    proxy = await startPgProxy({ upstream: `postgres://${upstream.host}`, control: {} });
    const through = new URL(db.url);
    through.host = proxy.address;
    appPool = new pg.Pool({
      connectionString: through.toString(),
      max: 20,
      options: `-c search_path=${db.schema}`,
    });
    appPool.on('error', () => undefined);
    api = await startAuditApi(appPool);
    const direct = new URL(db.url);
    direct.searchParams.set('options', `-c search_path=${db.schema}`);
    directUrl = direct.toString();
  });
  after(async () => {
    api.server.close();
    await appPool.end();
    await proxy.close();
    await db.close();
  });

  const scenarioOf = (c: Case): ScenarioDefinition => ({
    name: c.path,
    target: api.url,
    databaseUrl: directUrl,
    setup: async ({ sql }) => {
      await sql(c.setup);
    },
    burst: {
      count: 10,
      request: (i) => ({ method: 'POST', path: c.path, json: c.body?.(i) ?? {} }),
    },
    check: async ({ sql, responses }) => [
      await c.check(sql, responses.filter((r) => r.status >= 200 && r.status < 300).length),
    ],
  });

  it('one sequential pass flags every racy handler with its anomaly and none of the twins', async () => {
    const seen: string[] = [];
    for (const c of CASES) {
      const result = await auditScenario(scenarioOf(c), { proxy: proxy.controlUrl as string });
      const got =
        result.verdict === 'race'
          ? result.findings.map((f) => f.anomaly).join('+')
          : result.verdict;
      seen.push(`${c.path}: ${got}`);
      assert.equal(got, c.expected, `${c.path}: ${JSON.stringify(result, null, 1)}`);
      if (result.verdict === 'race') {
        const [finding] = result.findings;
        assert.match(finding?.statements[0] ?? '', /^select/i, 'names the read');
        assert.ok((finding?.fix.length ?? 0) > 20, 'names a fix');
      }
    }
    console.log(seen.join('\n'));
  });

  it('--confirm proves the flagged races with a burst while the read is held back', async () => {
    for (const path of ['/buy/read-committed', '/signup', '/off-call/repeatable-read']) {
      const c = CASES.find((x) => x.path === path) as Case;
      const result = await auditScenario(scenarioOf(c), {
        proxy: proxy.controlUrl as string,
        confirm: true,
        confirmTrials: 5,
      });
      const [finding] = result.findings;
      assert.equal(finding?.confirmed, true, `${path}: ${finding?.confirmation}`);
      const violated = Number(/violated in (\d+)/.exec(finding?.confirmation ?? '')?.[1]);
      assert.ok(violated >= 4, `${path}: ${finding?.confirmation}`);
    }
    assert.deepEqual(proxy.delays(), [], 'the delay is lifted afterwards');
    // The bar, on the narrowest window (the write leaves in the turn
    // the read's reply arrives in) and on the ORM: at least 19 of 20 bursts of 10.
    for (const path of ['/coupon/redeem', '/orm/buy']) {
      const c = CASES.find((x) => x.path === path) as Case;
      const natural = await runScenario(scenarioOf(c), { trials: 20, warmup: false });
      const result = await auditScenario(scenarioOf(c), {
        proxy: proxy.controlUrl as string,
        confirm: true,
        confirmTrials: 20,
      });
      const [finding] = result.findings;
      const violated = Number(/violated in (\d+)/.exec(finding?.confirmation ?? '')?.[1]);
      console.log(`${path}: ${natural.violatedTrials}/20 bursts unaided, ${violated}/20 confirmed`);
      assert.ok(violated >= 19, `${path}: ${finding?.confirmation}`);
    }
    // Control: the twin's read held back the same way, its burst stays clean.
    proxy.setDelays([{ pattern: '/FOR UPDATE/', ms: 150 }]);
    try {
      const twin = CASES.find((x) => x.path === '/buy/for-update') as Case;
      const report = await runScenario(scenarioOf(twin), { trials: 3, warmup: false });
      assert.equal(report.violatedTrials, 0, JSON.stringify(report.invariants));
      assert.equal(report.trials, 3);
    } finally {
      proxy.setDelays([]);
    }
  });

  it('run with dbDelays: applied through the proxy for the run and lifted after; refused without a proxy', async () => {
    const c = CASES.find((x) => x.path === '/buy/read-committed') as Case;
    const scenario = { ...scenarioOf(c), dbDelays: [{ pattern: 'SELECT products', ms: 100 }] };
    let seenDuringRun: unknown;
    const report = await runScenario(scenario, {
      trials: 2,
      warmup: false,
      proxy: proxy.controlUrl as string,
      onTrial: () => (seenDuringRun = proxy.delays()),
    });
    assert.deepEqual(seenDuringRun, [{ pattern: 'SELECT products', ms: 100 }]);
    assert.deepEqual(proxy.delays(), []);
    assert.equal(report.violatedTrials, 2, JSON.stringify(report.invariants));
    await assert.rejects(runScenario(scenario, { trials: 1 }), /--proxy/);
    const flag = await runCli(['run', 'nothing.json', '--db-delay', 'SELECT products']);
    assert.equal(flag.status, 2);
    assert.match(flag.stderr, /PATTERN=MS/);
  });

  it('the command: --json, exit 1 on a race and 0 when safe; a dead proxy is exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raceguard-audit-'));
    const write = async (name: string, c: Case): Promise<string> => {
      const file = join(dir, name);
      const scenario = {
        name: c.path,
        target: api.url,
        databaseUrl: directUrl,
        burst: { count: 2, request: { method: 'POST', path: c.path, json: {} } },
      };
      await writeFile(
        file,
        `export default { ...${JSON.stringify(scenario)}, setup: ({ sql }) => sql(${JSON.stringify(c.setup)}), check: () => [] };\n`,
      );
      return file;
    };
    const racy = await write('racy.mjs', CASES[0] as Case);
    const safe = await write('safe.mjs', CASES[2] as Case);
    const control = proxy.controlUrl as string;
    const raced = await runCli(['audit', racy, '--proxy', control, '--json']);
    assert.equal(raced.status, 1, raced.stderr);
    const json = JSON.parse(raced.stdout) as {
      results: { verdict: string; findings: { anomaly: string }[] }[];
    };
    assert.equal(json.results[0]?.verdict, 'race');
    assert.equal(json.results[0]?.findings[0]?.anomaly, 'lost-update');
    const clean = await runCli(['audit', safe, '--proxy', control]);
    assert.equal(clean.status, 0, clean.stderr);
    assert.match(clean.stdout, /safe/);
    const dead = await runCli(['audit', safe, '--proxy', 'http://127.0.0.1:1']);
    assert.equal(dead.status, 2);
    assert.match(dead.stdout, /did not answer/);
  });
});

describe('raceguard audit on the race lab behind the proxy', { timeout: 300_000 }, () => {
  it('flags every unsafe variant and no fix, from one sequential pass each', async () => {
    const db = await openTestDatabase(2);
    const upstream = new URL(db.url);
    const proxy = await startPgProxy({ upstream: `postgres://${upstream.host}`, control: {} });
    const through = new URL(db.url);
    through.host = proxy.address;
    const lab = await serveLab({ databaseUrl: through.toString() });
    try {
      const verdicts: string[] = [];
      for (const scenario of labScenarios(lab.url, { concurrency: 10, trials: 1 })) {
        const result = await auditScenario(scenario, {
          proxy: proxy.controlUrl as string,
          databaseUrl: db.url,
        });
        const unsafe = scenario.name.endsWith('/unsafe');
        verdicts.push(`${scenario.name}: ${result.verdict}`);
        assert.equal(
          result.verdict,
          unsafe ? 'race' : 'safe',
          `${scenario.name}: ${JSON.stringify(result.findings.map((f) => [f.anomaly, f.statements]))}`,
        );
      }
      assert.ok(verdicts.filter((v) => v.endsWith('race')).length >= 9, verdicts.join('\n'));
      console.log(verdicts.join('\n'));
    } finally {
      await lab[Symbol.asyncDispose]();
      await proxy.close();
      await db.close();
    }
  });
});
