/**
 * Histories from `raceguard run`: a scenario that reads its burst as
 * compare-and-set operations gets a linearizability verdict per trial; the
 * racy seat endpoint is not linearizable (exit 1, the request that broke it
 * named, a history page linked from the HTML report), the atomic one is
 * (exit 0); `--history` writes files that `raceguard check` reads back to
 * the same verdicts.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';

describe('raceguard run: histories and linearizability', () => {
  let taken: number | undefined;
  const server = createServer((request, response) => {
    const finish = (status: number) => {
      response.statusCode = status;
      response.end();
    };
    if (request.method === 'DELETE') {
      taken = undefined;
      return finish(204);
    }
    if (request.url === '/atomic') {
      if (taken !== undefined) return finish(409);
      taken = 1;
      return finish(201);
    }
    // Racy: check, let other requests in, then take.
    const free = taken === undefined;
    setTimeout(() => {
      if (!free) return finish(409);
      taken = 1;
      finish(201);
    }, 20);
  });
  let target: string;
  let dir: string;
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    target = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = await mkdtemp(join(tmpdir(), 'raceguard-history-'));
  });
  after(() => server.close());

  const scenario = 'test/run/fixtures/seat-history.scenario.ts';

  it('the racy seat is not linearizable, with a page per trial linked from the report; the atomic one is', async () => {
    const html = join(dir, 'report.html');
    const racy = await runCli(
      [
        'run',
        scenario,
        '--target',
        target,
        '--json',
        '--html',
        html,
        '--history',
        join(dir, 'racy'),
      ],
      {
        SEAT_PATH: '/racy',
      },
    );
    assert.equal(racy.status, 1, racy.stderr);
    const [report] = (
      JSON.parse(racy.stdout) as {
        scenarios: {
          invariants: Record<string, { violations: number }>;
          trialReports: { history: { verdict: string } }[];
        }[];
      }
    ).scenarios;
    assert.equal(report!.invariants.linearizable!.violations, 3);
    assert.deepEqual(
      report!.trialReports.map((t) => t.history.verdict),
      ['not-linearizable', 'not-linearizable', 'not-linearizable'],
    );
    const page = await readFile(html, 'utf8');
    assert.match(
      page,
      /Histories that are not linearizable: <a href="report\.html\.histories\/1-trial-1\.html">trial 1<\/a>/,
    );
    const trialPage = await readFile(join(dir, 'report.html.histories', '1-trial-1.html'), 'utf8');
    assert.match(trialPage, /not-linearizable/);
    assert.match(
      trialPage,
      /No order of the operations before it explains <b>client \d+: cas null \d+ → true<\/b>/,
    );

    const atomic = await runCli(
      ['run', scenario, '--target', target, '--json', '--history', join(dir, 'atomic')],
      {
        SEAT_PATH: '/atomic',
      },
    );
    assert.equal(atomic.status, 0, atomic.stderr);

    // The written histories read back through raceguard check to the same verdicts.
    const files = (name: string) =>
      readdir(join(dir, name)).then((list) => list.sort().map((file) => join(dir, name, file)));
    const racyFiles = await files('racy');
    assert.equal(racyFiles.length, 3);
    // The files record their model: no --format, no --model.
    const recheck = await runCli(['check', '--json', ...racyFiles]);
    assert.equal(recheck.status, 1);
    assert.deepEqual(
      (
        JSON.parse(recheck.stdout) as { results: { verdict: string; operations: number }[] }
      ).results.map((r) => [r.verdict, r.operations]),
      [
        ['not-linearizable', 8],
        ['not-linearizable', 8],
        ['not-linearizable', 8],
      ],
    );
    const clean = await runCli(['check', ...(await files('atomic'))]);
    assert.equal(clean.status, 0, clean.stdout + clean.stderr);
    // A model that does not fit the operations is refused (never a false race), not a crash;
    // one bad file does not hide the others' verdicts; an empty file is an error.
    for (const model of ['counter', 'kv']) {
      const wrong = await runCli(['check', '--model', model, racyFiles[0] as string]);
      assert.equal(wrong.status, 2, wrong.stdout + wrong.stderr);
      assert.match(
        wrong.stderr,
        new RegExp(
          `json: not a ${model} history: operation \\d+: "(read|write|cas)" is not an operation of the ${model} model`,
        ),
      );
      assert.doesNotMatch(wrong.stdout + wrong.stderr, /TypeError|not-linearizable/);
    }
    const empty = join(dir, 'empty.json');
    await writeFile(empty, '');
    const mixed = await runCli([
      'check',
      '--json',
      empty,
      racyFiles[0] as string,
      ...(await files('atomic')),
    ]);
    assert.equal(mixed.status, 2, mixed.stderr);
    const verdicts = (
      JSON.parse(mixed.stdout) as { results: { verdict: string; error?: string }[] }
    ).results;
    assert.deepEqual(
      verdicts.map((r) => r.verdict),
      ['error', 'not-linearizable', 'linearizable', 'linearizable', 'linearizable'],
    );
    assert.match(verdicts[0]?.error ?? '', /empty/);
  });
});
