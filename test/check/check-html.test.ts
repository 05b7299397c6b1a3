/**
 * `raceguard check` on JSON histories, driven as a child process: a register
 * history whose read returns a value overwritten before it began (not
 * linearizable, exit 1) and its linearizable twin (exit 0); a transactional
 * history with write skew (exit 1, the anomaly named); bad input (exit 2).
 * The `--html` pages are rendered in headless Chromium: the failing prefix
 * and the operation that breaks it are drawn, and named in the DOM.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { CHROMIUM, chromium } from '../helpers/chromium.js';
import { runCli } from '../helpers/cli.js';
import { countColour, decodePng } from '../helpers/png.js';

const cli = (...args: string[]) => runCli(['check', ...args]);

describe('raceguard check --format json and --html', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'raceguard-check-'));
    const write = (value: number, call: number, ret: number, client = 1) => ({
      client,
      input: { op: 'write', value },
      output: null,
      call,
      return: ret,
    });
    // Client 2 reads 1 after the write of 2 completed: stale.
    await writeFile(
      join(dir, 'stale.json'),
      JSON.stringify({
        operations: [
          write(1, 0, 10),
          write(2, 20, 30),
          { client: 2, input: { op: 'read' }, output: 1, call: 40, return: 50 },
          { client: 3, input: { op: 'read' }, output: 2, call: 55, return: 60 },
          { client: 3, input: { op: 'write', value: 3 }, call: 65, return: null },
        ],
      }),
    );
    await writeFile(
      join(dir, 'fresh.json'),
      JSON.stringify([
        write(1, 0, 10),
        write(2, 20, 30),
        { client: 2, input: { op: 'read' }, output: 2, call: 40, return: 50 },
      ]),
    );
    await writeFile(
      join(dir, 'skew.json'),
      JSON.stringify({
        transactions: [
          {
            process: 1,
            status: 'ok',
            start: 0,
            end: 10,
            ops: [
              { f: 'r', key: 'x', value: [] },
              { f: 'append', key: 'y', value: 1 },
            ],
          },
          {
            process: 2,
            status: 'ok',
            start: 1,
            end: 11,
            ops: [
              { f: 'r', key: 'y', value: [] },
              { f: 'append', key: 'x', value: 2 },
            ],
          },
          {
            process: 3,
            status: 'ok',
            start: 20,
            end: 30,
            ops: [
              { f: 'r', key: 'x', value: [2] },
              { f: 'r', key: 'y', value: [1] },
            ],
          },
        ],
      }),
    );
    await writeFile(
      join(dir, 'broken.json'),
      '{"operations": [ {"client": 1, "input": {"op": "read"}, "output": 1, "call": 5, "return": 2} ]}',
    );
  });

  it('verdicts and exit codes for operations and transactions', async () => {
    const mixed = await cli(
      '--format',
      'json',
      '--model',
      'register',
      '--json',
      join(dir, 'fresh.json'),
      join(dir, 'stale.json'),
    );
    assert.equal(mixed.status, 1, mixed.stderr);
    const { results } = JSON.parse(mixed.stdout) as {
      results: { verdict: string; operations: number }[];
    };
    assert.deepEqual(
      results.map((r) => [r.verdict, r.operations]),
      [
        ['linearizable', 3],
        ['not-linearizable', 5],
      ],
    );
    assert.equal(
      (await cli('--format', 'json', '--model', 'register', join(dir, 'fresh.json'))).status,
      0,
    );
    const skew = await cli(
      '--format',
      'json',
      '--workload',
      'list-append',
      '--json',
      join(dir, 'skew.json'),
    );
    assert.equal(skew.status, 1, skew.stderr);
    const [txn] = (
      JSON.parse(skew.stdout) as {
        results: { verdict: string; anomalies: Record<string, number> }[];
      }
    ).results;
    assert.deepEqual([txn!.verdict, txn!.anomalies], ['anomalies', { G2: 1 }]);
    const table = await cli(
      '--format',
      'json',
      '--workload',
      'list-append',
      join(dir, 'skew.json'),
    );
    assert.match(table.stdout, /anomalies: G2 ×1/);
    // Bad input: named, exit 2.
    const broken = await cli('--format', 'json', '--model', 'register', join(dir, 'broken.json'));
    assert.equal(broken.status, 2);
    assert.match(broken.stderr, /broken\.json: .*operations\[0\]/);
    const noModel = await cli('--format', 'json', join(dir, 'fresh.json'));
    assert.equal(noModel.status, 2);
    assert.match(noModel.stderr, /--model/);
    const noWorkload = await cli('--format', 'json', join(dir, 'skew.json'));
    assert.equal(noWorkload.status, 2);
    assert.match(noWorkload.stderr, /--workload/);
  });

  it(
    'the HTML pages in a browser: the shortest failing prefix and the operation that breaks it',
    { skip: CHROMIUM === undefined && 'chromium is not installed' },
    async () => {
      const html = join(dir, 'pages');
      const run = await cli(
        '--format',
        'json',
        '--model',
        'register',
        '--html',
        html,
        join(dir, 'stale.json'),
      );
      assert.equal(run.status, 1, run.stderr);
      const page = join(html, 'stale.json.html');
      const source = await readFile(page, 'utf8');
      assert.doesNotMatch(source, /<script|https?:\/\//, 'self-contained: no script, no network');
      const dom = chromium(dir, '--dump-dom', `file://${page}`);
      assert.equal(dom.status, 0, dom.stderr);
      assert.match(dom.stdout, /not-linearizable/);
      assert.match(dom.stdout, /the shortest failing prefix holds 3/);
      assert.match(
        dom.stdout,
        /No order of the operations before it explains <b>client 2: read → 1<\/b>/,
      );
      const screenshot = join(dir, 'stale.png');
      const shot = chromium(
        dir,
        '--window-size=1000,800',
        `--screenshot=${screenshot}`,
        `file://${page}`,
      );
      assert.equal(shot.status, 0, shot.stderr);
      const image = decodePng(await readFile(screenshot));
      assert.ok(countColour(image, '#c0392b') > 500, 'the culprit bar is drawn red');
      assert.ok(countColour(image, '#f5b041') > 500, 'the prefix is drawn amber');

      const anomalies = await cli(
        '--format',
        'json',
        '--workload',
        'list-append',
        '--html',
        html,
        join(dir, 'skew.json'),
      );
      assert.equal(anomalies.status, 1);
      const skewDom = chromium(dir, '--dump-dom', `file://${join(html, 'skew.json.html')}`);
      assert.match(skewDom.stdout, /<h2>G2<\/h2>/);
      assert.match(skewDom.stdout, /T0 read a version that was then overwritten by T1/);
    },
  );
});
