import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command, Option } from 'commander';
import {
  loadWatchConfig,
  prometheusText,
  runChecks,
  watchLoop,
  type CheckResult,
  type WatchConfig,
  type WatchPool,
} from '../watch/watch.js';
import { integer, interruptOf, interruptible } from './options.js';
import { renderTable } from './table.js';

/** The results as a table. */
export function formatChecks(results: readonly CheckResult[]): string {
  return renderTable(
    ['check', 'kind', 'status', 'ms', 'detail'],
    results.map((r) => [r.name, r.kind, r.status, r.ms.toFixed(1), r.detail ?? '-']),
  );
}

async function openPool(url: string) {
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new Error(
      `raceguard watch speaks PostgreSQL (postgres://...); got ${url.split(':')[0]}:// (MySQL is not supported yet)`,
    );
  }
  const pg = (await import('pg')).default;
  const pool = new pg.Pool({ connectionString: url, max: 2, application_name: 'raceguard-watch' });
  // An idle connection cut by the server must not crash the watch.
  pool.on('error', () => undefined);
  return pool;
}

/** `raceguard watch`. */
export function watchCommand(): Command {
  return new Command('watch')
    .description(
      "Check invariants against a live PostgreSQL on an interval, each query in a READ ONLY transaction with a statement timeout (it can never write or hold locks for long): the checks of raceguard run's JSON/YAML scenarios (neverNegative, exactly, atMostEffects, unique, conserved). Logs each violation once with its rows, serves Prometheus metrics with --port. --once: exit 0 all hold, 1 a violation, 2 a check could not run.",
    )
    .argument(
      '<file>',
      'the watch file (.json or .yaml): { database?, intervalMs?, statementTimeoutMs?, checks: [...] }',
    )
    .option('--database <url>', "the database (default: the file's database, else $DATABASE_URL)")
    .addOption(
      new Option('--interval-ms <ms>', "overrides the file's intervalMs").argParser(integer(100)),
    )
    .option('--once', 'run every check once and exit with the verdict')
    .addOption(
      new Option(
        '--port <n>',
        'serve Prometheus metrics at http://127.0.0.1:<port>/metrics (0 = any free port)',
      ).argParser(integer(0)),
    )
    .option('--json', 'with --once: print the results as JSON')
    .action(watchAction);
}

/** The options of `raceguard watch`, as commander parses them. */
interface WatchCommandOptions {
  database?: string;
  intervalMs?: number;
  once?: boolean;
  port?: number;
  json?: boolean;
}

/** A status line on stderr. */
const log = (line: string): void => void process.stderr.write(`watch: ${line}\n`);

/** The action of `raceguard watch`: one round (`--once`) or a watch until stopped. */
async function watchAction(file: string, opts: WatchCommandOptions): Promise<void> {
  const loaded = await loadWatchConfig(file);
  const config: WatchConfig =
    opts.intervalMs === undefined ? loaded : { ...loaded, intervalMs: opts.intervalMs };
  const url = opts.database ?? config.database ?? (process.env.DATABASE_URL || undefined);
  if (url === undefined)
    throw new Error('no database: pass --database, set database in the file, or DATABASE_URL');
  const pool = await openPool(url);
  try {
    if (opts.once === true) await checkOnce(pool, config, opts.json === true);
    else await watchUntilStopped(pool, config, opts.port);
  } finally {
    await pool.end();
  }
}

/** `--once`: every check once; exit 0 all hold, 1 a violation, 2 a check could not run. */
async function checkOnce(pool: WatchPool, config: WatchConfig, json: boolean): Promise<void> {
  const results = await runChecks(pool, config);
  process.stdout.write(
    json ? `${JSON.stringify({ results }, null, 2)}\n` : `${formatChecks(results)}\n`,
  );
  for (const r of results.filter((x) => x.status === 'violated'))
    log(`VIOLATED ${r.name}: ${r.detail ?? ''}; rows: ${JSON.stringify(r.rows ?? [])}`);
  process.exitCode = results.some((r) => r.status === 'error')
    ? 2
    : results.some((r) => r.status === 'violated')
      ? 1
      : 0;
}

/** What the watch has seen so far, for the metrics. */
interface WatchState {
  latest: readonly CheckResult[];
  rounds: number;
  lastRunSeconds: number;
}

/** Check on the interval until SIGINT (130) or SIGTERM (a clean stop, exit 0), serving metrics on `port`. */
async function watchUntilStopped(
  pool: WatchPool,
  config: WatchConfig,
  port: number | undefined,
): Promise<void> {
  const state: WatchState = { latest: [], rounds: 0, lastRunSeconds: 0 };
  const server = port === undefined ? undefined : await serveMetrics(state, port);
  // What was last reported per check, so each violation and each recovery is logged once.
  const reported = new Map<string, string>();
  try {
    await interruptible((signal) =>
      watchLoop(pool, config, {
        signal,
        onRound: (results) => {
          state.latest = results;
          state.rounds += 1;
          state.lastRunSeconds = Date.now() / 1000;
          for (const r of results) {
            const previous = reported.get(r.name) ?? 'ok';
            const now = r.status === 'ok' ? 'ok' : `${r.status}: ${r.detail ?? ''}`;
            if (now === previous) continue;
            reported.set(r.name, now);
            if (r.status === 'violated')
              log(`VIOLATED ${r.name}: ${r.detail ?? ''}; rows: ${JSON.stringify(r.rows ?? [])}`);
            else if (r.status === 'error') log(`cannot check ${r.name}: ${r.detail ?? ''}`);
            else log(`holds again: ${r.name}`);
          }
        },
      }),
    );
  } catch (error) {
    // SIGTERM is how services are stopped: a clean stop, exit 0 (SIGINT stays 130).
    if (interruptOf(error) !== 'SIGTERM') throw error;
    log('stopped (SIGTERM)');
  } finally {
    server?.close();
    server?.closeAllConnections();
  }
}

/** Serve the watch's Prometheus metrics at `http://127.0.0.1:<port>/metrics`. */
async function serveMetrics(state: WatchState, port: number): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end('GET /metrics\n');
      return;
    }
    const up = !state.latest.some(
      (r) => r.detail?.startsWith('cannot reach the database') === true,
    );
    response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(
      prometheusText(state.latest, {
        rounds: state.rounds,
        lastRunSeconds: state.lastRunSeconds,
        up,
      }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  log(`metrics at http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
  return server;
}
