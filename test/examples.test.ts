import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { serveLab } from '../packages/cli/src/lab/serve-lab.js';
import { runCli } from './helpers/cli.js';

it('the README quick start runs and prints what the README says', () => {
  const run = spawnSync(
    process.execPath,
    ['--conditions=raceguard-source', '--import', 'tsx', 'examples/quick-start.ts'],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^sold 10$/m);
  assert.match(run.stdout, /^bundle sold true$/m);
  assert.match(run.stdout, /^restocked \{ stock: 6 \}$/m);
});

it('the TypeORM example: save() loses the first editor’s change, saveChecked keeps it and tells the second', () => {
  const run = spawnSync(
    process.execPath,
    ['--conditions=raceguard-source', '--import', 'tsx', 'examples/orm/typeorm-two-editors.ts'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(run.stdout.trim().split('\n'), [
    'save: both saves succeeded',
    'save: the document reads "Bob: fixed a typo"',
    'saveChecked: Bob is told the document changed (now "Alice: fixed the intro")',
    'saveChecked: the document reads "Alice: fixed the intro"',
  ]);
});

it('the lab’s scenarios run as scenario files: unsafe variants are races, every fix is clean', async () => {
  await using lab = await serveLab({ gapMs: 0 });
  const all = await runCli(['run', 'examples/race/lab.scenario.ts', '--json'], {
    LAB_URL: lab.url,
    LAB_SCENARIOS: 'inventory,payment',
  });
  assert.equal(all.status, 1, all.stderr);
  const { scenarios } = JSON.parse(all.stdout) as {
    scenarios: { name: string; violatedTrials: number; erroredTrials: number }[];
  };
  assert.deepEqual(
    scenarios.map((s) => s.name),
    [
      'inventory/unsafe',
      'inventory/atomic',
      'inventory/pessimistic',
      'inventory/optimistic',
      'inventory/serializable',
      'inventory/advisory-lock',
      'payment/unsafe',
      'payment/atomic',
      'payment/idempotency-key',
    ],
  );
  for (const s of scenarios) {
    assert.equal(s.erroredTrials, 0, s.name);
    if (s.name.endsWith('/unsafe')) assert.ok(s.violatedTrials > 0, `${s.name} not caught`);
    else assert.equal(s.violatedTrials, 0, `${s.name} showed a violation`);
  }
  // The README's TypeScript scenario, with sql() checks on the lab's database.
  const ts = await runCli(['run', 'examples/race/last-unit.scenario.ts', '--json'], {
    LAB_URL: lab.url,
    DATABASE_URL: lab.databaseUrl,
  });
  assert.equal(ts.status, 1, ts.stderr + ts.stdout);
  const lastUnit = (
    JSON.parse(ts.stdout) as {
      scenarios: { name: string; violatedTrials: number; erroredTrials: number }[];
    }
  ).scenarios.map((s) => [s.name, s.violatedTrials > 0, s.erroredTrials]);
  assert.deepEqual(lastUnit, [
    ['last unit (unsafe)', true, 0],
    ['last unit (atomic)', false, 0],
  ]);
  const yaml = await runCli(['run', 'examples/race/last-unit.yaml', '--target', lab.url]);
  assert.equal(yaml.status, 1, yaml.stderr + yaml.stdout);
  assert.match(yaml.stdout, /RACE last unit \(unsafe\): at-most-1-winners violated/);
});
