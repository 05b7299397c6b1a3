import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runLab, type LabReport } from '../../packages/cli/src/lab/run-lab.js';
import {
  CACHE_SCENARIOS,
  MESSAGE_SCENARIOS,
  REPLICA_SCENARIOS,
  CLOCK_SCENARIOS,
  SCENARIOS,
} from '../../packages/cli/src/lab/scenarios/index.js';
import { appliesTo, STRATEGIES } from '../../packages/cli/src/lab/scenario.js';

function assertExpectedOutcome(report: LabReport): void {
  // The message and cache scenarios run too (NATS and Redis are on these machines, or started for the lab).
  assert.deepEqual(report.skipped, []);
  for (const scenario of [
    ...SCENARIOS,
    ...MESSAGE_SCENARIOS,
    ...CACHE_SCENARIOS,
    ...REPLICA_SCENARIOS,
    ...CLOCK_SCENARIOS,
  ]) {
    const unsafe = report.results.find(
      (r) => r.scenario === scenario.name && r.strategy === 'unsafe',
    );
    assert.ok(
      unsafe && unsafe.anomalousTrials > 0,
      `unsafe ${scenario.name} was not caught: ${JSON.stringify(unsafe)}`,
    );
  }
  const dirty = report.results.filter(
    (r) => !report.unsafeStrategies.includes(r.strategy) && r.anomalousTrials > 0,
  );
  assert.deepEqual(dirty, [], 'every fix must be clean');
  assert.equal(report.fixesClean, true);
  const expected = [
    ...SCENARIOS,
    ...MESSAGE_SCENARIOS,
    ...CACHE_SCENARIOS,
    ...REPLICA_SCENARIOS,
    ...CLOCK_SCENARIOS,
  ].reduce((n, scenario) => n + STRATEGIES.filter((s) => appliesTo(scenario, s)).length, 0);
  assert.equal(report.results.length, expected);
  // The duplicate-request scenario runs its idempotency fix.
  assert.ok(
    report.results.some((r) => r.scenario === 'payment' && r.strategy === 'idempotency-key'),
  );
  // Order events: unsafe, a payment that overtakes its order is lost and a duplicate charges
  // twice; the ordered consumer and the inbox apply every event once, dropping the duplicates.
  const unsafeEvents = report.results.find(
    (r) => r.scenario === 'order-events' && r.strategy === 'unsafe',
  );
  assert.ok(
    (unsafeEvents?.anomalies['updated-before-created'] ?? 0) > 0,
    JSON.stringify(unsafeEvents),
  );
  for (const strategy of ['ordered-consumer', 'inbox'] as const) {
    const fixed = report.results.find(
      (r) => r.scenario === 'order-events' && r.strategy === strategy,
    );
    assert.equal(
      fixed?.accepted,
      report.concurrency * 3 * report.trials,
      `${strategy} applied each event once`,
    );
    assert.ok((fixed?.rejected ?? 0) > 0, `${strategy} dropped the duplicates`);
  }
  // Product price: the folklore cache fixes fail with a slow reader; the lease cache refuses its fill.
  for (const strategy of ['delete-before-write', 'double-delete'] as const) {
    const folklore = report.results.find(
      (r) => r.scenario === 'product-price' && r.strategy === strategy,
    );
    assert.ok((folklore?.anomalousTrials ?? 0) > 0, `${strategy}: ${JSON.stringify(folklore)}`);
  }
  for (const strategy of ['lease-cache', 'versioned-write'] as const) {
    const fixed = report.results.find(
      (r) => r.scenario === 'product-price' && r.strategy === strategy,
    );
    assert.ok((fixed?.rejected ?? 0) > 0, `${strategy} refused the slow readers' fills`);
  }
  // Profile read: the fixed window fails when the person comes back after it; the token never
  // does, and still serves the later visits from the replica.
  const window = report.results.find(
    (r) => r.scenario === 'profile-read' && r.strategy === 'primary-window',
  );
  assert.ok((window?.anomalousTrials ?? 0) > 0, JSON.stringify(window));
  const token = report.results.find(
    (r) => r.scenario === 'profile-read' && r.strategy === 'session-token',
  );
  assert.ok((token?.rejected ?? 0) > 0, `the replica served some reads: ${JSON.stringify(token)}`);
}

describe('race lab', () => {
  it('catches every unsafe variant and shows every fix clean (gap 2 ms)', async () => {
    const report = await runLab({ concurrency: 40, trials: 2, gapMs: 2 });
    assertExpectedOutcome(report);
    // 40 buyers, 4 units, 2 trials: every fix sells exactly 8.
    for (const r of report.results.filter(
      (x) => x.scenario === 'inventory' && x.strategy !== 'unsafe',
    )) {
      assert.equal(r.accepted, 8, `${r.strategy} sold ${r.accepted}`);
    }
    const serializable = report.results.filter((r) => r.strategy === 'serializable');
    assert.ok(
      serializable.some((r) => r.retries > 0),
      'serializable under contention retries',
    );
  });

  it('catches every unsafe variant with no artificial delay at all (gap 0)', async () => {
    assertExpectedOutcome(await runLab({ concurrency: 40, trials: 2, gapMs: 0 }));
  });

  it('two lab servers behind one database: an in-process mutex fails, the distributed locks hold', async () => {
    const report = await runLab({
      concurrency: 40,
      trials: 2,
      gapMs: 2,
      servers: 2,
      scenarios: ['counter', 'bank'],
      strategies: ['local-mutex', 'redis-lock', 'lease-lock', 'etcd-lock'],
    });
    const byStrategy = (strategy: string) => report.results.filter((r) => r.strategy === strategy);
    assert.ok(
      byStrategy('local-mutex').every((r) => r.anomalousTrials > 0),
      `each server's own mutex cannot see the other's holders: ${JSON.stringify(byStrategy('local-mutex'))}`,
    );
    for (const strategy of ['redis-lock', 'lease-lock', 'etcd-lock']) {
      assert.deepEqual(
        byStrategy(strategy).map((r) => r.anomalousTrials),
        [0, 0],
        strategy,
      );
    }
    assert.deepEqual(report.unsafeStrategies, [
      'unsafe',
      'delete-before-write',
      'double-delete',
      'primary-window',
      'local-mutex',
    ]);
    assert.equal(report.fixesClean, true);
  });

  it('with one server, the in-process mutex is enough; each burst is recorded as a history', async () => {
    const historyDir = await mkdtemp(join(tmpdir(), 'raceguard-lab-history-'));
    const report = await runLab({
      concurrency: 30,
      trials: 1,
      gapMs: 2,
      scenarios: ['counter'],
      strategies: ['local-mutex'],
      historyDir,
    });
    assert.equal(report.results[0]?.anomalousTrials, 0);
    assert.equal(report.results[0]?.accepted, 30);
    assert.deepEqual(await readdir(historyDir), ['counter-local-mutex-trial-1.json']);
    const { operations } = JSON.parse(
      await readFile(join(historyDir, 'counter-local-mutex-trial-1.json'), 'utf8'),
    ) as {
      operations: { client: number; output: { status: number }; call: number; return: number }[];
    };
    assert.deepEqual(
      operations.map((op) => op.client),
      Array.from({ length: 30 }, (_, i) => i),
    );
    assert.ok(
      operations.every(
        (op) => op.output.status >= 200 && op.output.status < 300 && op.return >= op.call,
      ),
    );
  });

  it('rejects bad options before starting anything', async () => {
    await assert.rejects(
      runLab({ concurrency: 1 }),
      /concurrency must be an integer from 2 to 1000/,
    );
    await assert.rejects(runLab({ scenarios: ['nope'] }), /scenario must be one of/);
    await assert.rejects(runLab({ gapMs: Number.NaN }), /gapMs/);
    await assert.rejects(runLab({ servers: 0 }), /servers must be an integer from 1 to 8/);
  });
});

describe('raceguard lab (CLI)', () => {
  const cli = (...args: string[]) =>
    spawnSync(
      process.execPath,
      [
        '--conditions=raceguard-source',
        '--import',
        'tsx',
        'packages/cli/src/commands/main.ts',
        'lab',
        ...args,
      ],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );

  it('prints the documented JSON and exits 0 when the fixes are clean', () => {
    const run = cli(
      '--json',
      '-c',
      '20',
      '-t',
      '1',
      '-s',
      'counter,loan',
      '--strategy',
      'unsafe,atomic',
    );
    assert.equal(run.status, 0, run.stderr);
    const parsed = JSON.parse(run.stdout) as { results: Record<string, unknown>[] };
    assert.equal(parsed.results.length, 4);
    for (const r of parsed.results) {
      assert.deepEqual(Object.keys(r).sort(), [
        'accepted',
        'anomalies',
        'anomalousTrials',
        'conflicts',
        'errors',
        'p50Ms',
        'p99Ms',
        'rejected',
        'retries',
        'scenario',
        'strategy',
        'throughputPerSec',
        'trials',
      ]);
    }
    assert.ok(
      parsed.results.some((r) => r.strategy === 'unsafe' && (r.anomalousTrials as number) > 0),
    );
  });

  it('prints a table with the verdict lines', () => {
    const run = cli('-c', '10', '-t', '1', '-s', 'seat');
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /scenario\s+strategy\s+trials\s+anomalous/);
    assert.match(run.stdout, /unsafe variants caught: \d\/1/);
    assert.match(run.stdout, /fixes: every fix showed zero anomalies/);
  });

  it('exits 2 with a clear message on bad arguments', () => {
    const run = cli('--concurrency', 'lots');
    assert.equal(run.status, 2);
    assert.match(run.stderr, /expected an integer >= 2, got "lots"/);
    const unknown = cli('--strategy', 'magic');
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /"magic" is not one of/);
  });
});
