import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';

it('the README quick start runs and prints what the README says', () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'examples/quick-start.ts'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^sold 10$/m);
  assert.match(run.stdout, /^bundle sold true$/m);
  assert.match(run.stdout, /^restocked \{ stock: 6 \}$/m);
});
