/**
 * The `raceguard` bin in this checkout: its target is a committed file, so
 * npm links `node_modules/.bin/raceguard` right after `npm ci` (bins are
 * linked before `prepare` builds dist/); it answers `--version` without
 * loading the command, and says what to do when the command is not built.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';

const repo = resolve(import.meta.dirname, '../..');

describe('the raceguard bin', { timeout: 60_000 }, () => {
  it('points at a committed file that npm links, and answers --version from package.json', async () => {
    const manifest = JSON.parse(
      await readFile(join(repo, 'packages', 'cli', 'package.json'), 'utf8'),
    ) as { version: string; bin: Record<string, string>; files: string[] };
    const target = join('packages', 'cli', manifest.bin.raceguard as string);
    const tracked = execFileSync('git', ['ls-files', '--error-unmatch', target], {
      cwd: repo,
      encoding: 'utf8',
    });
    assert.equal(tracked.trim(), target, 'the bin target is committed, not built');
    assert.ok(manifest.files.includes('bin'), 'and published');
    assert.equal(
      await realpath(join(repo, 'node_modules', '.bin', 'raceguard')),
      await realpath(join(repo, target)),
    );
    const version = spawnSync(join(repo, 'node_modules', '.bin', 'raceguard'), ['--version'], {
      encoding: 'utf8',
    });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout, `${manifest.version}\n`);
  });

  it('without a built command: a clear error naming the build command, exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raceguard-bin-'));
    try {
      await mkdir(join(dir, 'bin'));
      await copyFile(
        join(repo, 'packages', 'cli', 'bin', 'raceguard.js'),
        join(dir, 'bin', 'raceguard.js'),
      );
      await writeFile(
        join(dir, 'package.json'),
        JSON.stringify({ name: 'cli', version: '9.9.9', type: 'module' }),
      );
      const run = spawnSync(process.execPath, [join(dir, 'bin', 'raceguard.js'), 'run', 'x'], {
        encoding: 'utf8',
      });
      assert.equal(run.status, 2);
      assert.match(run.stderr, /not built yet.*npm run build/);
      const version = spawnSync(process.execPath, [join(dir, 'bin', 'raceguard.js'), '-V'], {
        encoding: 'utf8',
      });
      assert.equal(version.stdout, '9.9.9\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
