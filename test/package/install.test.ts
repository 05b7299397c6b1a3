/**
 * The packed packages as users install them: `npm pack` of the library
 * (`raceguard`) and of the command (`@raceguard/cli`); a service that installs
 * only the library gets none of the command's dependencies; a fresh CommonJS
 * project (what `npm init -y` makes) and a fresh ESM project install both,
 * import them, and run `raceguard run` on a directory of scenario files in
 * every format (.ts, .mts, .cts, .js, JSON, YAML).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify as stringifyYaml } from 'yaml';
import type { ScenarioReport } from '../../packages/cli/src/run/run-scenario.js';
import { startShop } from '../helpers/shop.js';

const repo = resolve(import.meta.dirname, '../..');

function run(command: string, args: readonly string[], cwd: string) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 300_000 });
  assert.equal(result.status, 0, `${command} ${args.join(' ')}: ${result.stderr}`);
  return `${result.stdout}${result.stderr}`;
}

/** Run the installed CLI asynchronously (the target server lives in this process). */
function raceguard(args: readonly string[], cwd: string) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(join(cwd, 'node_modules', '.bin', 'raceguard'), args, { cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

/** One scenario of the racy purchase, written in each module flavour. */
const body = (name: string) => `{
  name: ${JSON.stringify(name)},
  target: 'http://127.0.0.1:1',
  trials: 2,
  setup: async ({ http }) => {
    await http({ method: 'POST', path: '/reset', json: { stock: 1 } });
  },
  burst: { count: 20, request: (i) => ({ method: 'POST', path: '/buy/unsafe', json: { buyer: 'b' + i } }) },
  check: ({ responses }) => [atMostWinners(responses, 1, (r) => r.status === 201)],
}`;
const esm = (name: string) =>
  `import { atMostWinners, defineScenario } from 'raceguard/run';\nexport default defineScenario(${body(name)});\n`;
const cjs = (name: string) =>
  `const { atMostWinners, defineScenario } = require('raceguard/run');\nmodule.exports = defineScenario(${body(name)});\n`;
const typed = (name: string) =>
  `import { atMostWinners, defineScenario, type ScenarioDefinition } from 'raceguard/run';\nconst scenario: ScenarioDefinition = defineScenario(${body(name)});\nexport default scenario;\n`;
const declarative = (name: string) => ({
  name,
  target: 'http://127.0.0.1:1',
  trials: 2,
  setup: [{ request: { method: 'POST', path: '/reset', json: { stock: 1 } } }],
  burst: { count: 20, request: { method: 'POST', path: '/buy/unsafe', json: { buyer: 'b{i}' } } },
  check: [{ atMostWinners: 1, status: [201] }],
});

describe('the packed package in fresh projects', () => {
  const shop = startShop();
  let target: string;
  let work: string;
  let library: string;
  let cli: string;

  before(async () => {
    shop.server.listen(0, '127.0.0.1');
    await new Promise((listening) => shop.server.once('listening', listening));
    target = `http://127.0.0.1:${(shop.server.address() as AddressInfo).port}`;
    work = await mkdtemp(join(tmpdir(), 'raceguard-pack-'));
    run('npm', ['run', 'build'], repo);
    run(
      'npm',
      ['pack', '--silent', '-w', 'raceguard', '-w', '@raceguard/cli', '--pack-destination', work],
      repo,
    );
    const tarballs = (await readdir(work)).filter((f) => f.endsWith('.tgz')).sort();
    assert.deepEqual(tarballs, ['raceguard-0.1.0.tgz', 'raceguard-cli-0.1.0.tgz']);
    library = join(work, 'raceguard-0.1.0.tgz');
    cli = join(work, 'raceguard-cli-0.1.0.tgz');
  });
  after(async () => {
    shop.server.close();
    await rm(work, { recursive: true, force: true });
  });

  const install = (project: string, tarballs: readonly string[]) =>
    run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=warn', ...tarballs],
      project,
    );

  it('a service that installs only the library gets no dependency of the command', async () => {
    const project = join(work, 'service');
    await mkdir(project, { recursive: true });
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'service', version: '1.0.0', private: true, type: 'module' }),
    );
    install(project, [library]);
    const tree = run('npm', ['ls', '--omit=dev', '--all', '--parseable'], project);
    const installed = tree
      .split('\n')
      .filter((line) => line.includes('node_modules'))
      .map((line) => line.slice(line.lastIndexOf('node_modules/') + 'node_modules/'.length));
    assert.deepEqual(installed, ['raceguard']);
    for (const heavy of ['fastify', 'tsx', 'esbuild', 'undici', 'zod', 'yaml', 'commander']) {
      assert.ok(!installed.includes(heavy), heavy);
    }
    // Every subpath the library publishes imports without a driver installed (drivers are optional
    // peers), except the Vitest adapter, which is only ever imported by a Vitest test file, the
    // Kysely and Drizzle adapters, which only a project using that query builder imports, and the
    // OpenTelemetry adapter, which only a project with @opentelemetry/api imports.
    const { exports } = JSON.parse(
      await readFile(join(repo, 'packages', 'raceguard', 'package.json'), 'utf8'),
    ) as { exports: Record<string, unknown> };
    const subpaths = Object.keys(exports)
      .filter(
        (p) =>
          !['./package.json', './explore/vitest', './kysely', './drizzle', './otel'].includes(p),
      )
      .map((p) => p.replace(/^\./, 'raceguard'));
    assert.ok(subpaths.includes('raceguard/nats') && subpaths.includes('raceguard/messaging'));
    const imported = run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `for (const p of ${JSON.stringify(subpaths)}) await import(p); console.log('ok');`,
      ],
      project,
    );
    assert.equal(imported.trim(), 'ok');
    // No command comes with the library.
    assert.ok(!tree.includes('@raceguard/cli'));
  });

  for (const type of ['commonjs', 'module'] as const) {
    it(`a ${type} project installs it, imports it, and runs .ts, .mts, .cts, .js, JSON and YAML scenarios`, async () => {
      const project = join(work, type);
      await mkdir(join(project, 'race'), { recursive: true });
      await writeFile(
        join(project, 'package.json'),
        JSON.stringify({ name: `user-${type}`, version: '1.0.0', private: true, type }),
      );
      // One command with drivers, as the issue tried (it once failed with ERESOLVE).
      const installed = install(project, [library, cli, 'ioredis', 'pg']);
      // Clean on Node 20: no dependency that wants a newer Node.
      assert.doesNotMatch(installed, /EBADENGINE/);
      // The library imports from both kinds of project.
      const imported = run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          "const run = await import('raceguard/run'); const core = await import('raceguard'); const engine = await import('@raceguard/cli'); console.log(typeof run.defineScenario, typeof core.withLock, typeof engine.runScenario);",
        ],
        project,
      );
      assert.equal(imported.trim(), 'function function function');
      // Issue 27's defects, from the user's side of the packed tarball: a
      // quick restart of a clock with a mark file resumes at most a window
      // ahead; a garbled mark file is an error; If-Match lists may hold
      // empty elements; a 3e9 ms sleep waits.
      const fixed = run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          [
            "const { HybridLogicalClock, fileHighWater, ClockHighWaterError } = await import('raceguard/clock');",
            "const { parseEntityTags, FieldNotWritableError } = await import('raceguard/http');",
            "const { sleep } = await import('raceguard');",
            "const fs = await import('node:fs'); const path = await import('node:path');",
            "const mark = path.join(fs.mkdtempSync('hlc-'), 'mark');",
            'let ahead = 0;',
            'for (let i = 0; i < 5; i++) { const c = new HybridLogicalClock({ highWater: fileHighWater(mark) }); ahead = Math.max(ahead, c.now().wall - Date.now()); }',
            "fs.writeFileSync(mark, '');",
            'let garbled = false; try { new HybridLogicalClock({ highWater: fileHighWater(mark) }); } catch (e) { garbled = e instanceof ClockHighWaterError; }',
            "const slept = await Promise.race([sleep(3e9).then(() => 'woke'), new Promise((r) => setTimeout(() => r('waiting'), 50))]);",
            'console.log(JSON.stringify({ ahead: ahead <= 250, garbled, tags: parseEntityTags(\', "1",, "2"\').length, field: typeof FieldNotWritableError, slept }));',
            'process.exit(0);',
          ].join('\n'),
        ],
        project,
      );
      assert.deepEqual(JSON.parse(fixed.trim()), {
        ahead: true,
        garbled: true,
        tags: 2,
        field: 'function',
        slept: 'waiting',
      });
      const race = join(project, 'race');
      await writeFile(join(race, 'a.scenario.ts'), typed('ts'));
      await writeFile(join(race, 'b.scenario.mts'), typed('mts'));
      await writeFile(join(race, 'c.scenario.cts'), cjs('cts'));
      await writeFile(join(race, 'd.scenario.js'), type === 'module' ? esm('js') : cjs('js'));
      await writeFile(join(race, 'e.json'), JSON.stringify(declarative('json')));
      await writeFile(join(race, 'f.yaml'), stringifyYaml(declarative('yaml')));
      const result = await raceguard(['run', 'race', '--target', target, '--json'], project);
      const { scenarios } = JSON.parse(result.stdout) as { scenarios: ScenarioReport[] };
      assert.deepEqual(
        scenarios.map((s) => [s.name, s.error ?? 'loaded', s.violatedTrials > 0]),
        ['ts', 'mts', 'cts', 'js', 'json', 'yaml'].map((name) => [name, 'loaded', true]),
        result.stderr,
      );
      assert.equal(result.status, 1, result.stderr);
      // Nothing compiled is left next to the scenarios.
      assert.deepEqual((await readdir(race)).sort(), [
        'a.scenario.ts',
        'b.scenario.mts',
        'c.scenario.cts',
        'd.scenario.js',
        'e.json',
        'f.yaml',
      ]);
    });
  }

  it("issue 27's defects through the packed tarballs on real servers (outbox hole, watch, malformed status, lease stall, late grant, stale bound, busy pool, replica session, key prefix, tenant move)", async () => {
    const project = join(work, 'module');
    const url = process.env.DATABASE_URL;
    assert.ok(url, 'DATABASE_URL (set by scripts/test.ts)');
    install(project, ['pg']);
    const table = `pack_outbox_${process.pid}`;
    // The issue's deterministic repro: seq 2 of K commits while a transaction
    // holds the fence below it, seq 3 (early xid) commits after it.
    await writeFile(
      join(project, 'hole.mjs'),
      [
        "import pg from 'pg';",
        "import { PostgresOutbox } from 'raceguard/postgres';",
        'const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 8 });',
        `const outbox = new PostgresOutbox({ client: pool, table: '${table}', partitions: 1 });`,
        'await outbox.createTables();',
        "const begin = async () => { const c = await pool.connect(); await c.query('BEGIN'); return c; };",
        "const late = await begin(); await late.query('SELECT pg_current_xact_id()');",
        "const prev = await begin(); await outbox.add(prev, { key: 'K', type: 't', payload: 1 }); await prev.query('COMMIT');",
        "const other = await begin(); await other.query('SELECT pg_current_xact_id()');",
        "const mid = await begin(); await outbox.add(mid, { key: 'K', type: 't', payload: 2 }); await mid.query('COMMIT');",
        "await outbox.add(late, { key: 'K', type: 't', payload: 3 }); await late.query('COMMIT');",
        'const published = [];',
        'const relay = outbox.relay({ publisher: { async publish(messages) { published.push(...messages.map((m) => `${m.key}#${m.seq}`)); } } });',
        'await relay.poll();',
        "await other.query('COMMIT');",
        'const deadline = Date.now() + 30_000;',
        'while (published.length < 3 && Date.now() < deadline) if ((await relay.poll()) === 0) await new Promise((r) => setTimeout(r, 20));',
        'await relay.poll();',
        'for (const c of [late, prev, other, mid]) c.release();',
        'await relay.stop();',
        `await pool.query('DROP TABLE ${table}, ${table}_keys, ${table}_cursors');`,
        'await pool.end();',
        'console.log(JSON.stringify(published));',
      ].join('\n'),
    );
    const hole = run(process.execPath, ['hole.mjs'], project);
    assert.deepEqual(JSON.parse(hole.trim()), ['K#1', 'K#2', 'K#3']);

    // watch: a check that tries to commit a write gets an error and writes nothing.
    const stock = `pack_stock_${process.pid}`;
    const admin = new (await import('pg')).default.Pool({ connectionString: url, max: 1 });
    try {
      await admin.query(
        `CREATE TABLE ${stock} (stock int NOT NULL); INSERT INTO ${stock} VALUES (5)`,
      );
      await writeFile(
        join(project, 'watch.json'),
        JSON.stringify({
          checks: [
            {
              name: 'commit-update',
              neverNegative: {
                sql: `SELECT stock FROM ${stock}; COMMIT; UPDATE ${stock} SET stock = -7`,
              },
            },
          ],
        }),
      );
      const watched = await raceguard(
        ['watch', 'watch.json', '--once', '--database', url],
        project,
      );
      assert.equal(watched.status, 2, watched.stderr);
      assert.match(watched.stdout, /commit-update.*error.*single SQL statement/);
      assert.deepEqual((await admin.query(`SELECT stock FROM ${stock}`)).rows, [{ stock: 5 }]);
    } finally {
      await admin.query(`DROP TABLE IF EXISTS ${stock}`);
      await admin.end();
    }

    // A lease whose renewal stalls (Redis paused) is reported lost by its validUntil; a grant
    // whose reply the driver gave up on is handed back (the key is free long before its 30 s
    // lease); a two-phase invalidation serves the old value for staleMs at most; the body of a
    // conditional write can never move a row to another key.
    await writeFile(
      join(project, 'stall.mjs'),
      [
        "import { Redis } from 'ioredis';",
        "import pg from 'pg';",
        "import { RedisLock } from 'raceguard/redis';",
        "import { startRedisServer } from 'raceguard/testing';",
        "import { conditionalWrites } from 'raceguard/http';",
        "import { versionedRows } from 'raceguard/postgres';",
        'const server = await startRedisServer();',
        'const client = new Redis(server.url, { maxRetriesPerRequest: 1 });',
        "client.on('error', () => {});",
        'const subscriber = new Redis(server.url);',
        "subscriber.on('error', () => {});",
        'const locks = new RedisLock({ client, subscriber });',
        "const held = await locks.acquire('k', { ttlMs: 1000, autoExtend: true });",
        'const started = Date.now();',
        "process.kill(server.process.pid, 'SIGSTOP');",
        'let lostAfter = -1;',
        'await Promise.race([',
        "  new Promise((resolve) => held.signal.addEventListener('abort', () => { lostAfter = Date.now() - started; resolve(); })),",
        '  new Promise((resolve) => setTimeout(resolve, 3000)),',
        ']);',
        "process.kill(server.process.pid, 'SIGCONT');",
        // A grant whose reply the driver gave up on (commandTimeout) is handed back, not held for its lease.
        'const timing = new Redis(server.url, { commandTimeout: 150, maxRetriesPerRequest: 1 });',
        "timing.on('error', () => {});",
        'const timed = new RedisLock({ client: timing, prefix: "late:" });',
        "await (await timed.acquire('warm-up')).release();",
        "process.kill(server.process.pid, 'SIGSTOP');",
        'await new Promise((resolve) => setTimeout(resolve, 50));',
        "const failed = await timed.acquire('late', { ttlMs: 30_000 }).then(() => false, () => true);",
        "process.kill(server.process.pid, 'SIGCONT');",
        'const other = new RedisLock({ client, prefix: "late:" });',
        'const askedAt = Date.now();',
        "const next = await other.acquire('late', { ttlMs: 5000, waitMs: 5000 });",
        'const freedAfter = Date.now() - askedAt;',
        'await next.release();',
        'timing.disconnect();',
        // A two-phase invalidation serves the old value for staleMs at most, however long the refresh takes.
        "const { LeaseCache, CacheWaitTimeoutError } = await import('raceguard/cache');",
        "const cacheOptions = { client, prefix: 'c:', ttlMs: 60_000, staleMs: 300 };",
        'const cache = new LeaseCache({ ...cacheOptions, leaseMs: 10_000 });',
        'const reader = new LeaseCache({ ...cacheOptions, waitMs: 50, pollMs: 5 });',
        "await cache.get('k', async () => 'old');",
        "await cache.invalidate('k', { mark: true });",
        'const markedAt = Date.now();',
        'let finish = () => {};',
        "const refresh = cache.get('k', () => new Promise((resolve) => (finish = () => resolve('new'))));",
        'let lateOld = 0;',
        'while (Date.now() - markedAt < 1000) {',
        "  const value = await reader.get('k', async () => 'never').catch((e) => (e instanceof CacheWaitTimeoutError ? 'waiting' : Promise.reject(e)));",
        "  if (value === 'old' && Date.now() - markedAt > 350) lateOld++;",
        '  await new Promise((resolve) => setTimeout(resolve, 20));',
        '}',
        'finish();',
        "const refreshed = (await refresh) === 'new';",
        'await cache.close(); await reader.close();',
        'client.disconnect(); subscriber.disconnect();',
        'await server.stop();',
        'const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });',
        `const table = 'pack_docs_${process.pid}';`,
        "await pool.query(`CREATE TABLE ${table} (tenant text, id int, title text NOT NULL, version int NOT NULL, PRIMARY KEY (tenant, id)); INSERT INTO ${table} VALUES ('a', 1, 'draft', 9)`);",
        'const docs = conditionalWrites(versionedRows(pool, { table }));',
        "const moved = await docs.update({ tenant: 'a', id: 1 }, { tenant: 'b', title: 'stolen' }, { 'if-match': '\"9\"' });",
        'const { rows } = await pool.query(`SELECT tenant, title FROM ${table}`);',
        'await pool.query(`DROP TABLE ${table}`);',
        'await pool.end();',
        'console.log(JSON.stringify({ lost: lostAfter >= 0 && lostAfter <= 1500, late: failed && freedAfter < 5000, stale: refreshed && lateOld === 0, moved: moved.status, rows }));',
      ].join('\n'),
    );
    const stall = run(process.execPath, ['stall.mjs'], project);
    assert.deepEqual(JSON.parse(stall.trim()), {
      lost: true,
      late: true,
      stale: true,
      moved: 400,
      rows: [{ tenant: 'a', title: 'draft' }],
    });

    // transaction() on a pool whose only connection is taken ends on abort; a read through a replica
    // session after a SELECT that wrote on the primary is not stale; telemetry never exports a
    // whole key without a prefix.
    install(project, ['@opentelemetry/api']);
    await writeFile(
      join(project, 'more.mjs'),
      [
        "import pg from 'pg';",
        "import { transaction, ReplicaRouter } from 'raceguard/postgres';",
        "import { AbortedError } from 'raceguard';",
        "import { startReplicatedPostgres } from 'raceguard/testing';",
        "import { keyPrefix } from 'raceguard/otel';",
        'const single = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });',
        'const taken = await single.connect();',
        'const askedAt = Date.now();',
        'const aborted = await transaction(single, async () => 1, { signal: AbortSignal.timeout(200) }).then(() => false, (e) => e instanceof AbortedError && Date.now() - askedAt < 2000);',
        'taken.release();',
        'await single.end();',
        'const pair = await startReplicatedPostgres();',
        'const primary = new pg.Pool({ connectionString: pair.primaryUrl, max: 4 });',
        'const replica = new pg.Pool({ connectionString: pair.replicaUrl, max: 4 });',
        // A pooled connection the server ends while idle is an 'error' event on its pool (pg's advice: always handle it).
        "for (const pool of [primary, replica]) pool.on('error', () => {});",
        'await primary.query(`CREATE TABLE bumped (id int PRIMARY KEY, n int NOT NULL); INSERT INTO bumped VALUES (1, 5);',
        '  CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS $$ UPDATE bumped SET n = n + 1 WHERE id = 1 RETURNING n $$`);',
        "const replicaN = async () => (await replica.query('SELECT n FROM bumped WHERE id = 1').catch(() => ({ rows: [] }))).rows[0]?.n;",
        'while ((await replicaN()) !== 5) await new Promise((r) => setTimeout(r, 10));',
        'const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 20, pollMs: 10 });',
        'await pair.setApplyDelay(1000);',
        'const session = router.session();',
        "await session.query('UPDATE bumped SET n = 0 WHERE id = 1');",
        'await new Promise((r) => setTimeout(r, 500));',
        "const bumped = (await session.query('SELECT bump() AS n')).rows[0].n;",
        'while ((await replicaN()) !== 0) await new Promise((r) => setTimeout(r, 5));',
        "const readBack = (await session.query('SELECT n FROM bumped WHERE id = 1')).rows[0].n;",
        'await router.close(); await primary.end(); await replica.end(); await pair.stop();',
        "console.log(JSON.stringify({ aborted, bumped, readBack, prefix: keyPrefix('ada@example.com') }));",
      ].join('\n'),
    );
    const more = run(process.execPath, ['more.mjs'], project);
    assert.deepEqual(JSON.parse(more.trim().split('\n').at(-1) as string), {
      aborted: true,
      bumped: 1,
      readBack: 1,
      prefix: '(no prefix)',
    });

    // run: a target that sends a malformed status line and closes is a transport error (exit 2), not a crash.
    const malformed = createServer((socket) => {
      socket.on('error', () => undefined); // the client may reset after the bad reply
      socket.once('data', () => socket.end('HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n'));
    });
    malformed.listen(0, '127.0.0.1');
    await new Promise((listening) => malformed.once('listening', listening));
    try {
      await writeFile(
        join(project, 'malformed.json'),
        JSON.stringify({
          name: 'malformed',
          target: `http://127.0.0.1:${(malformed.address() as AddressInfo).port}`,
          trials: 1,
          burst: { count: 5, request: { method: 'GET', path: '/' } },
          check: [{ atMostWinners: 1, status: [200] }],
        }),
      );
      const ran = await raceguard(['run', 'malformed.json', '--json'], project);
      assert.equal(ran.status, 2, `${ran.stdout}${ran.stderr}`);
      assert.doesNotMatch(ran.stderr, /Uncaught|TypeError/);
    } finally {
      malformed.close();
    }
  });

  for (const type of ['commonjs', 'module'] as const) {
    it(`a ${type} TypeScript project with skipLibCheck: false compiles against every subpath that needs no optional peer`, async () => {
      const project = join(work, `typed-${type}`);
      await mkdir(project, { recursive: true });
      await writeFile(
        join(project, 'package.json'),
        JSON.stringify({ name: `typed-${type}`, version: '1.0.0', private: true, type }),
      );
      install(project, [library, 'typescript', '@types/node']);
      // Each of these needs its own peer's types, which only its users have.
      const withPeer = [
        './http/fastify',
        './http/hono',
        './otel',
        './kysely',
        './drizzle',
        './typeorm',
        './package.json',
      ];
      const { exports } = JSON.parse(
        await readFile(join(project, 'node_modules', 'raceguard', 'package.json'), 'utf8'),
      ) as { exports: Record<string, unknown> };
      const subpaths = Object.keys(exports)
        .filter((p) => !withPeer.includes(p))
        .map((p) => p.replace(/^\./, 'raceguard'));
      assert.ok(subpaths.includes('raceguard/http') && subpaths.includes('raceguard/postgres'));
      await writeFile(
        join(project, 'index.ts'),
        [
          ...subpaths.map((p, i) => `import * as m${i} from '${p}';`),
          "import { expressIdempotency } from 'raceguard/http';",
          "import { MemoryIdempotencyStore } from 'raceguard';",
          // An Express-style app: the middleware's type, with no Express, Fastify or Hono installed.
          'export const guard = expressIdempotency({ store: new MemoryIdempotencyStore(), scope: () => "anonymous" });',
          `export const loaded = [${subpaths.map((_, i) => `m${i}`).join(', ')}].length;`,
        ].join('\n'),
      );
      await writeFile(
        join(project, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            module: 'nodenext',
            moduleResolution: 'nodenext',
            target: 'es2022',
            skipLibCheck: false,
            noEmit: true,
            types: ['node'],
          },
          files: ['index.ts'],
        }),
      );
      for (const peer of ['express', 'fastify', 'hono', '@types/express']) {
        assert.ok(!existsSync(join(project, 'node_modules', peer)), `${peer} is not installed`);
      }
      run(join(project, 'node_modules', '.bin', 'tsc'), ['-p', '.'], project);
    });
  }

  it("the README's install commands, as written, in a fresh project", async () => {
    const readme = await readFile(join(repo, 'README.md'), 'utf8');
    const block =
      /<!-- tested: the package test runs this block as written -->\s*```sh\n([\s\S]*?)```/.exec(
        readme,
      )?.[1];
    assert.ok(block, 'the README keeps its tested install block');
    const home = join(work, 'home');
    const project = join(home, 'app');
    await mkdir(project, { recursive: true });
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'app', version: '1.0.0', private: true }),
    );
    // Comment lines say where each command runs: the checkout, then the project.
    let cwd = repo;
    for (const line of block.split('\n').map((l) => l.trim())) {
      if (line.startsWith('# in your project')) cwd = project;
      if (line === '' || line.startsWith('#')) continue;
      const result = spawnSync('bash', ['-c', line], {
        cwd,
        encoding: 'utf8',
        timeout: 300_000,
        env: {
          ...process.env,
          HOME: home,
          // The user's npm cache, not a fresh one under the new HOME.
          npm_config_cache: process.env.npm_config_cache ?? join(homedir(), '.npm'),
          npm_config_prefer_offline: 'true',
        },
      });
      assert.equal(result.status, 0, `${line}: ${result.stderr}`);
      if (line.startsWith('npx raceguard --help')) assert.match(result.stdout, /Usage: raceguard/);
    }
    const installed = JSON.parse(await readFile(join(project, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    assert.deepEqual(Object.keys(installed.dependencies).sort(), ['pg', 'raceguard']);
    assert.deepEqual(Object.keys(installed.devDependencies), ['@raceguard/cli']);
  });
});
