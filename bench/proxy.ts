/**
 * Pass-through cost of `raceguard proxy`, side by side in one run: the same
 * clients send queries straight to PostgreSQL (the floor, 1.00), through the
 * proxy recording every statement, through the proxy with recording off,
 * and through PgBouncer in transaction mode (the peer a user already
 * knows; Debian's `pgbouncer`, skipped with a note when not installed).
 * Simple protocol (`SELECT 1`) and extended protocol (`SELECT $1::int`), at
 * 1, 16 and 64 clients; rounds interleave the routes, the median of each
 * is reported with its ratio to direct.
 *
 *   npm run bench:proxy [-- --clients 1,16,64 --seconds 2 --rounds 3 --database URL --json]
 *
 * The server is an embedded PostgreSQL unless `--database` or DATABASE_URL names one.
 * PgBouncer pools 24 server connections (transaction mode is used to serve many
 * clients with few), so 64 direct clients and its idle pool fit in a server's default 100.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { freePort, usePostgres } from '../packages/raceguard/dist/testing/index.js';
import { median } from './stats.js';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '1,16,64' },
    seconds: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    database: {
      type: 'string',
      default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    },
    json: { type: 'boolean', default: false },
  },
});
const clientCounts = args.clients.split(',').map(Number);
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
// An embedded server by default (max_connections 300: 64 direct clients, 64 through each
// proxy and PgBouncer's pool fit at once); --database (or DATABASE_URL) for another.
const server = await usePostgres({ url: (args.database ?? process.env.DATABASE_URL) || undefined });
const database = new URL(server.url);
const log = (line: string): void => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

/** Every process the run started, stopped (with its process group) however the run ends. */
const started: ChildProcess[] = [];
const configs: string[] = [];
const stopAll = (): void => {
  // runuser may start PgBouncer in a process group of its own: named by its config file.
  for (const config of configs) spawnSync('pkill', ['-f', config]);
  for (const child of started) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
};
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));

/** `raceguard proxy` as a user runs it: its own process. */
async function startProxy(record: boolean): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      'packages/cli/bin/raceguard.js',
      'proxy',
      '--upstream',
      `postgres://${database.host}`,
      '--listen',
      '127.0.0.1:0',
      ...(record ? [] : ['--no-record']),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  started.push(child);
  let seen = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr?.on('data', (d: Buffer) => {
      seen += d.toString();
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(seen);
      if (match) resolve(Number(match[1]));
    });
    child.on('exit', (code) => reject(new Error(`raceguard proxy exited ${code}: ${seen}`)));
  });
  return { port, child };
}

/** PgBouncer in transaction mode in front of the same server, or why not. */
async function startPgBouncer(): Promise<{ port: number; child: ChildProcess } | string> {
  const binary = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((p) => existsSync(p));
  if (binary === undefined) return 'not installed (apt-get install pgbouncer)';
  const dir = await mkdtemp(join(tmpdir(), 'raceguard-pgbouncer-'));
  const port = await freePort();
  const user = decodeURIComponent(database.username || 'postgres');
  await writeFile(join(dir, 'users.txt'), `"${user}" "${decodeURIComponent(database.password)}"\n`);
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${database.hostname} port=${database.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      'pool_mode = transaction',
      `auth_type = ${database.password === '' ? 'trust' : 'plain'}`,
      `auth_file = ${join(dir, 'users.txt')}`,
      'max_client_conn = 500',
      'default_pool_size = 24',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root: as root, run it as the postgres (or nobody) account.
  const asRoot = process.getuid?.() === 0;
  const account = existsSync('/var/lib/postgresql') ? 'postgres' : 'nobody';
  if (asRoot) {
    for (const file of ['', 'users.txt', 'pgbouncer.ini']) await chown(join(dir, file), account);
  }
  const child = asRoot
    ? spawn('runuser', ['-u', account, '--', binary, join(dir, 'pgbouncer.ini')], {
        stdio: 'ignore',
        detached: true,
      })
    : spawn(binary, [join(dir, 'pgbouncer.ini')], { stdio: 'ignore', detached: true });
  started.push(child);
  configs.push(join(dir, 'pgbouncer.ini'));
  for (let i = 0; i < 100; i += 1) {
    const c = new pg.Client({ connectionString: urlAt(port) });
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return { port, child };
    } catch {
      await c.end().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  child.kill();
  return 'did not start';
}

/** `chown account path` (the files PgBouncer reads and the folder it writes its log in). */
function chown(path: string, account: string): Promise<void> {
  return new Promise((resolve, reject) => {
    spawn('chown', [account, path], { stdio: 'ignore' }).on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`chown ${account} ${path}: exit ${code}`)),
    );
  });
}

function urlAt(port: number): string {
  const url = new URL(database);
  url.host = `127.0.0.1:${port}`;
  return url.toString();
}

/** Queries per second of `clients` connections looping for `seconds`. */
async function measure(url: string, clients: number, extended: boolean): Promise<number> {
  const connections = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let done = 0;
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    connections.map(async (c, i) => {
      while (performance.now() < until) {
        if (extended) await c.query('SELECT $1::int AS n', [i]);
        else await c.query('SELECT 1');
        done += 1;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await Promise.all(connections.map((c) => c.end()));
  return done / elapsed;
}

log(`PostgreSQL: ${server.url.replace(/:[^:@/]*@/, ':***@')}`);
log('starting the proxies and PgBouncer');
const recording = await startProxy(true);
const bare = await startProxy(false);
const bouncer = await startPgBouncer();
const routes: Record<string, string | undefined> = {
  direct: server.url,
  'proxy (recording)': urlAt(recording.port),
  'proxy (no recording)': urlAt(bare.port),
  pgbouncer: typeof bouncer === 'string' ? undefined : urlAt(bouncer.port),
};
if (typeof bouncer === 'string') log(`pgbouncer: ${bouncer}`);
log(
  `PostgreSQL at ${database.host}; ${rounds} rounds of ${seconds} s per cell, routes interleaved`,
);

const results: { clients: number; protocol: string; route: string; qps: number }[] = [];
for (const clients of clientCounts) {
  for (const extended of [false, true]) {
    const samples = new Map<string, number[]>();
    for (let round = 0; round < rounds; round += 1) {
      for (const [route, url] of Object.entries(routes)) {
        if (url === undefined) continue;
        const qps = await measure(url, clients, extended);
        samples.set(route, [...(samples.get(route) ?? []), qps]);
      }
    }
    for (const [route, values] of samples) {
      results.push({
        clients,
        protocol: extended ? 'extended' : 'simple',
        route,
        qps: median(values),
      });
    }
    log(`  ${clients} client(s), ${extended ? 'extended' : 'simple'}: done`);
  }
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  const rows = clientCounts.flatMap((clients) =>
    ['simple', 'extended'].map((protocol) => {
      const at = (route: string): number | undefined =>
        results.find((r) => r.clients === clients && r.protocol === protocol && r.route === route)
          ?.qps;
      const direct = at('direct') as number;
      const cell = (route: string): string => {
        const qps = at(route);
        return qps === undefined ? '-' : `${(qps / direct).toFixed(2)}× (${Math.round(qps)})`;
      };
      const proxy = at('proxy (recording)');
      const bouncerQps = at('pgbouncer');
      return [
        String(clients),
        protocol,
        `${Math.round(direct)}`,
        cell('proxy (recording)'),
        cell('proxy (no recording)'),
        cell('pgbouncer'),
        proxy === undefined || bouncerQps === undefined
          ? '-'
          : `${(proxy / bouncerQps).toFixed(2)}×`,
      ];
    }),
  );
  process.stdout.write(
    `${renderTable(
      [
        'clients',
        'protocol',
        'direct q/s (1.00)',
        'proxy, recording',
        'proxy, no recording',
        'pgbouncer (transaction)',
        'proxy / pgbouncer',
      ],
      rows,
    )}\n`,
  );
}
stopAll();
await server.stop();
process.exit(0);
