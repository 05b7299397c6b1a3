import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import {
  ALL_STRATEGIES,
  LOCK_STRATEGIES,
  SCENARIOS,
  ALL_SCENARIO_NAMES,
  STRATEGIES,
  runLab,
  serveLab,
  type LabReport,
  type ServedLab,
  type Strategy,
} from '../lab/index.js';
import { dialectOf } from '../lab/lab-database.js';
import { integer, interruptible } from './options.js';
import { createProgress } from './progress.js';
import { outputWidth, renderTable, wrap } from './table.js';

const nonNegative = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new CommanderArgumentError(`expected a number >= 0, got "${value}"`);
  }
  return n;
};

const list =
  (allowed: readonly string[]) =>
  (value: string, previous: string[] = []): string[] => {
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const item of items) {
      if (!allowed.includes(item))
        throw new CommanderArgumentError(`"${item}" is not one of: ${allowed.join(', ')}`);
    }
    return [...previous, ...items];
  };

/** `--database`: a PostgreSQL or MySQL / MariaDB URL. */
const databaseUrl = (value: string): string => {
  if (!/^(postgres|postgresql|mysql|mariadb):\/\/[^/]/i.test(value)) {
    throw new CommanderArgumentError(
      `expected a postgres://, postgresql://, mysql:// or mariadb:// URL, got "${value}"`,
    );
  }
  return value;
};

const formatNumber = (n: number, digits = 1): string =>
  Number.isFinite(n) ? n.toFixed(digits) : '-';

/** Human-readable report: the table, then the verdict lines. */
export function formatLabReport(report: LabReport): string {
  const rows = report.results.map((r) => [
    r.scenario,
    r.strategy,
    r.trials,
    r.anomalousTrials,
    Object.entries(r.anomalies)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ') || '-',
    r.accepted,
    r.rejected,
    r.conflicts,
    r.retries,
    formatNumber(r.throughputPerSec, 0),
    `${formatNumber(r.p50Ms)} / ${formatNumber(r.p99Ms)}`,
  ]);
  const table = renderTable(
    [
      'scenario',
      'strategy',
      'trials',
      'anomalous',
      'anomalies',
      'accepted',
      'rejected',
      'conflicts',
      'retries',
      'req/s',
      'p50/p99 ms',
    ],
    rows,
  );
  const isUnsafe = (strategy: Strategy): boolean => report.unsafeStrategies.includes(strategy);
  const unsafe = report.results.filter((r) => isUnsafe(r.strategy));
  const caught = unsafe.filter((r) => r.anomalousTrials > 0);
  const dirtyFixes = report.results.filter((r) => !isUnsafe(r.strategy) && r.anomalousTrials > 0);
  const lines = [
    table,
    ...wrap(
      'anomalous: trials whose invariants broke; accepted: 2xx (messages: events applied); rejected: 4xx refused by a business rule (sold out, already taken; messages: duplicates dropped); conflicts: 409 (lost the race to another request); retries: transactions or version checks re-run inside the handlers (messages: handler attempts retried or redelivered); for product-price, accepted: reads served, rejected: stale fills the cache refused; for profile-read, accepted: reads, rejected: reads the replica served; for address-register, accepted: writes kept, rejected: writes refused as older; req/s: messages per second for order-events, reads and writes per second for product-price',
      outputWidth(),
    ),
    '',
    `${report.database === 'mysql' ? 'MySQL / MariaDB' : `PostgreSQL: ${report.embeddedPostgres ? 'embedded' : 'given by URL'}`}; ${report.concurrency} concurrent requests per burst over ${report.servers} lab server(s), ${report.trials} trial(s), gap ${report.gapMs} ms`,
  ];
  if (unsafe.length > 0) {
    const detail = unsafe
      .map(
        (r) =>
          `${r.scenario}${r.strategy === 'unsafe' ? '' : `/${r.strategy}`} ${r.anomalousTrials}/${r.trials}`,
      )
      .join(', ');
    lines.push(
      `unsafe variants caught: ${caught.length}/${unsafe.length} (trials with anomalies: ${detail})`,
    );
  }
  for (const { scenario, reason } of report.skipped) lines.push(`skipped ${scenario}: ${reason}`);
  lines.push(
    dirtyFixes.length === 0
      ? 'fixes: every fix showed zero anomalies in every trial'
      : `FIXES BROKEN: ${dirtyFixes.map((r) => `${r.scenario}/${r.strategy}`).join(', ')}`,
  );
  return lines.join('\n');
}

/** What `raceguard lab --serve` prints: where the service and its database are, and its routes. */
export function formatServeBanner(lab: ServedLab): string {
  const scenarios = SCENARIOS.map(
    (s) =>
      `  POST ${lab.url}/scenarios/${s.name}/<strategy>  ${JSON.stringify(s.requests({ concurrency: 2 })[0])}`,
  );
  return [
    `lab service at ${lab.url} (Ctrl-C stops it${lab.embedded ? ' and deletes the embedded database' : ''})`,
    `database: ${lab.databaseUrl}`,
    lab.dialect === 'mysql'
      ? `  database ${lab.schema}; tables <scenario>_* (inventory_products, bank_accounts, ...); sql() checks of scenario files speak PostgreSQL: check through the /lab/<scenario>/check route`
      : `  schema ${lab.schema}; tables <scenario>_* (inventory_products, bank_accounts, ...); use this URL as a scenario's databaseUrl for sql() checks`,
    "routes (GET / lists them as JSON, with each scenario's strategies and invariant):",
    ...scenarios,
    `  POST ${lab.url}/lab/<scenario>/<strategy>/reset  {"concurrency":50}  -> recreates and seeds the tables, returns the burst's bodies`,
    `  POST ${lab.url}/lab/<scenario>/check  {"concurrency":50,"responses":[...]}  -> the invariants read from the database`,
    `strategies: ${ALL_STRATEGIES.join(', ')}`,
    `try: a file race.scenario.ts with  import { labScenarios } from '@raceguard/cli/lab'; export default labScenarios('${lab.url}');`,
    `     then  raceguard run race.scenario.ts  (in the raceguard repository: raceguard run examples/race/lab.scenario.ts --target ${lab.url})`,
  ].join('\n');
}

/** `raceguard lab`. */
export function labCommand(): Command {
  return new Command('lab')
    .description(
      'Start PostgreSQL (embedded unless --database or DATABASE_URL is set; a mysql:// URL runs the relational scenarios on MySQL / MariaDB) and the race lab service, fire synchronized bursts at every scenario in its unsafe variant and in every fix, and check the invariants. Exits 0 only when every fix is clean.',
    )
    .addOption(
      new Option(
        '--database <url>',
        'the database to run on: postgres://... or mysql://... (default: $DATABASE_URL, else an embedded PostgreSQL)',
      ).argParser(databaseUrl),
    )
    .addOption(
      new Option('-c, --concurrency <n>', 'requests per burst, released together')
        .default(100)
        .argParser(integer(2)),
    )
    .addOption(
      new Option('-t, --trials <n>', 'bursts per scenario and strategy')
        .default(5)
        .argParser(integer(1)),
    )
    .addOption(
      new Option(
        '-s, --scenario <names>',
        `scenarios to run, comma-separated (${ALL_SCENARIO_NAMES.join(', ')})`,
      ).argParser(list(ALL_SCENARIO_NAMES)),
    )
    .addOption(
      new Option(
        '--strategy <names>',
        `strategies to run, comma-separated (default: ${STRATEGIES.join(', ')}; also: ${LOCK_STRATEGIES.join(', ')})`,
      ).argParser(list(ALL_STRATEGIES)),
    )
    .addOption(
      new Option('--gap-ms <ms>', 'awaited pause between read and write; 0 = no artificial delay')
        .default(2)
        .argParser(nonNegative),
    )
    .addOption(
      new Option('--pool-size <n>', 'connections of the lab service to PostgreSQL')
        .default(32)
        .argParser(integer(1)),
    )
    .addOption(
      new Option(
        '--servers <n>',
        'lab servers behind the same database, requests spread over them (an in-process mutex fails with 2+)',
      )
        .default(1)
        .argParser(integer(1)),
    )
    .option(
      '--history <dir>',
      'write every HTTP burst as a history file (raceguard check reads them)',
    )
    .option('--no-warmup', 'skip the unscored burst fired before the first scored one')
    .option('--json', 'print the results as JSON on stdout')
    .option(
      '--serve',
      'only start the lab service and keep it running, as a target for `raceguard run`',
    )
    .addOption(
      new Option('--port <n>', 'loopback port of the service with --serve (0 = any free port)')
        .default(4100)
        .argParser(integer(0)),
    )
    .action(labAction);
}

/** The options of `raceguard lab`, as commander parses them. */
interface LabCommandOptions {
  concurrency: number;
  trials: number;
  scenario?: string[];
  strategy?: Strategy[];
  gapMs: number;
  poolSize: number;
  servers: number;
  history?: string;
  json?: boolean;
  serve?: boolean;
  port: number;
  database?: string;
  warmup: boolean;
}

/** A status line on stderr. */
const status = (line: string): void => void process.stderr.write(`lab: ${line}\n`);

/** Say which database the lab is about to start or connect to. */
function announceDatabase(opts: LabCommandOptions): void {
  // An empty DATABASE_URL counts as unset, as usePostgres reads it.
  const url = opts.database ?? (process.env.DATABASE_URL || undefined);
  status(
    url === undefined
      ? 'starting an embedded PostgreSQL (--database or DATABASE_URL to use your own)…'
      : `connecting to ${dialectOf(url) === 'mysql' ? 'MySQL / MariaDB' : 'PostgreSQL'} at ${opts.database === undefined ? 'DATABASE_URL' : '--database'}…`,
  );
}

/** The action of `raceguard lab`: run the lab (exit 0 only when every fix is clean), or serve it. */
async function labAction(opts: LabCommandOptions): Promise<void> {
  if (opts.serve === true) return serveAction(opts);
  const progress = createProgress();
  try {
    // Inside the Ctrl-C handling, so an interrupt from here on is reported as 130.
    const report = await interruptible((signal) => {
      announceDatabase(opts);
      return runLab({
        ...(opts.database !== undefined && { databaseUrl: opts.database }),
        concurrency: opts.concurrency,
        trials: opts.trials,
        warmup: opts.warmup,
        gapMs: opts.gapMs,
        poolSize: opts.poolSize,
        servers: opts.servers,
        signal,
        ...(opts.history !== undefined && { historyDir: opts.history }),
        ...(opts.scenario && { scenarios: opts.scenario }),
        ...(opts.strategy && { strategies: opts.strategy }),
        onStart: (start) =>
          status(
            `${start.database === 'mysql' ? 'MySQL / MariaDB' : 'PostgreSQL'} ready (${start.embedded ? 'embedded' : 'by URL'}, ${start.database === 'mysql' ? 'database' : 'schema'} ${start.schema}); releasing ${start.bursts} bursts of ${opts.concurrency} requests`,
          ),
        onProgress: (p) => progress.update(p.done, p.total, `${p.scenario}/${p.strategy}`),
      });
    });
    progress.done();
    process.stdout.write(
      opts.json === true
        ? `${JSON.stringify({ results: report.results }, null, 2)}\n`
        : `${formatLabReport(report)}\n`,
    );
    process.exitCode = report.fixesClean ? 0 : 1;
  } finally {
    progress.done();
  }
}

/** `raceguard lab --serve`: start the lab service and keep it until Ctrl-C (or SIGTERM), reported as 130. */
async function serveAction(opts: LabCommandOptions): Promise<void> {
  await interruptible(async (signal) => {
    announceDatabase(opts);
    const lab = await serveLab({
      ...(opts.database !== undefined && { databaseUrl: opts.database }),
      port: opts.port,
      gapMs: opts.gapMs,
      poolSize: opts.poolSize,
      signal,
    }).catch((error: unknown) => {
      if ((error as { code?: unknown }).code === 'EADDRINUSE') {
        throw new Error(
          `port ${opts.port} on 127.0.0.1 is in use: choose another with --port (0 = any free port)`,
          { cause: error },
        );
      }
      throw error;
    });
    try {
      process.stdout.write(`${formatServeBanner(lab)}\n`);
      await new Promise<never>((_, reject) => {
        // A Ctrl-C during the last steps of starting has already fired.
        if (signal.aborted) reject(new Error('interrupted'));
        signal.addEventListener('abort', () => reject(new Error('interrupted')), { once: true });
      });
    } finally {
      await lab.close();
    }
  });
}
