/**
 * exploreTest from the user's side: a test file with one clean and one racy
 * program, run by node's test runner and by Vitest as child processes. The
 * racy test fails with the replay string and the trace in its message, the
 * clean one passes, and the replay string reproduces the failure.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { explore } from '../../packages/raceguard/src/explore/index.js';
import { racyIncrement } from './fixtures/lost-update.js';

const fixtures = new URL('./fixtures/', import.meta.url).pathname;

function replayOf(output: string): string {
  const match = /replay: (rg1:[0-9a-z.*]*)/.exec(output);
  assert.ok(match !== null, `no replay string in:\n${output}`);
  return match[1]!;
}

describe('exploreTest in test runners', () => {
  it('node:test: the racy test fails with a replay string that reproduces it; the clean one passes', async () => {
    const run = spawnSync(
      process.execPath,
      [
        '--conditions=raceguard-source',
        '--import',
        'tsx',
        '--test',
        '--test-reporter=spec',
        `${fixtures}node-test.fixture.ts`,
      ],
      // Without the parent runner's NODE_TEST_CONTEXT, or the child thinks it is nested and runs nothing.
      { encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
    );
    const output = run.stdout + run.stderr;
    assert.equal(run.status, 1, output);
    assert.match(output, /✔ atomic increment/);
    assert.match(output, /✖ racy increment/);
    assert.match(output, /lost update: counter is 1/);
    assert.match(output, /resumed after/);
    const replay = await explore(racyIncrement, { replay: replayOf(output) });
    assert.match(String((replay.failure?.cause as Error).message), /lost update/);
  });

  it('Vitest: the same file through exploreTest from raceguard/explore/vitest', async () => {
    const run = spawnSync(
      process.execPath,
      [
        'node_modules/vitest/vitest.mjs',
        'run',
        '--config',
        `${fixtures}vitest.config.ts`,
        '--reporter=verbose',
      ],
      { encoding: 'utf8', timeout: 180_000, env: { ...process.env, CI: 'true', NO_COLOR: '1' } },
    );
    const output = run.stdout + run.stderr;
    assert.equal(run.status, 1, output);
    assert.match(output, /✓ .*atomic increment/);
    assert.match(output, /[×✗] .*racy increment/);
    assert.match(output, /lost update: counter is 1/);
    const replay = await explore(racyIncrement, { replay: replayOf(output) });
    assert.ok(replay.failure !== undefined);
  });
});
