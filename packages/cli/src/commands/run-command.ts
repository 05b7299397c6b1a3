/**
 * `raceguard run <scenario files...>`: synchronised bursts at any HTTP API,
 * then a verdict on the data. Exit codes: 0 clean, 1 an invariant was
 * violated, 2 usage or scenario errors or trials that proved nothing (they
 * outrank a race: part of the run has no verdict), 130 interrupted.
 */
import { messageOf } from '../arguments.js';
import { collectDbDelay, integer, interruptible } from './options.js';
import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import { constants } from 'node:fs';
import { access, mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { linearizabilityHtml } from '../check/history-html.js';
import { AbortedError, InvalidArgumentError } from 'raceguard';
import { parseDelays } from 'raceguard/delay';
import type { DbDelay } from '../proxy/db-delays.js';
import {
  loadScenarios,
  scenarioFiles,
  toHtml,
  toJUnit,
  ARRIVAL_HEADER,
  erroredReport,
  runScenario,
  type ScenarioReport,
} from '../index.js';
import { isHttpUrl, type ScenarioDefinition } from 'raceguard/run';
import { createProgress } from './progress.js';
import { outputWidth, renderTable, wrap } from './table.js';

const formatMs = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(2);

const worstCode = (reports: readonly ScenarioReport[]): 0 | 1 | 2 =>
  reports.some((r) => r.error !== undefined || r.erroredTrials > 0)
    ? 2
    : reports.some((r) => r.violatedTrials > 0)
      ? 1
      : 0;

/** The human-readable report: one table row per scenario, then an explanation per violated invariant and per error. */
export function formatRunReport(reports: readonly ScenarioReport[]): string {
  const table = renderTable(
    [
      '#',
      'scenario',
      'trials',
      'raced',
      'errored',
      'statuses',
      'send spread ms p50/p95',
      'arrival spread ms p50/p95',
      'p50 ms',
      'p99 ms',
    ],
    reports.map((r, i) => [
      i + 1,
      r.name,
      r.trials,
      r.violatedTrials,
      r.error !== undefined ? 'all' : r.erroredTrials,
      Object.entries(r.statuses)
        .map(([status, n]) => `${status === '0' ? 'failed' : status}×${n}`)
        .join(' ') || '-',
      `${formatMs(r.sendSpreadMs.median)} / ${formatMs(r.sendSpreadMs.p95)}`,
      r.arrivalSpreadMs === null
        ? '-'
        : `${formatMs(r.arrivalSpreadMs.median)} / ${formatMs(r.arrivalSpreadMs.p95)}`,
      formatMs(r.latencyMs.p50),
      formatMs(r.latencyMs.p99),
    ]),
  );
  const lines = [
    table,
    ...wrap(
      'raced: trials in which an invariant was violated; errored: trials that proved nothing (see below); statuses: HTTP status × count ("failed": no response)',
      outputWidth(),
    ),
    '',
  ];
  for (const r of reports) {
    const where = r.file !== undefined && r.file !== r.name ? ` (${r.file})` : '';
    // A file that did not load has no name of its own: its error names the file.
    if (r.error !== undefined)
      lines.push(`ERROR ${r.name === r.file ? r.error : `${r.name}${where}: ${r.error}`}`);
    for (const [name, v] of Object.entries(r.invariants)) {
      if (v.violations > 0)
        lines.push(
          `RACE ${r.name}: ${name} violated in ${v.violations}/${r.trials} trials; ${v.example ?? ''}`,
        );
    }
    const errored = r.trialReports.filter((t) => t.error !== undefined);
    const first = errored[0];
    if (first !== undefined)
      lines.push(
        `ERROR ${r.name}${where}: ${errored.length}/${r.trials} trial(s) proved nothing; trial ${first.trial + 1}, ${first.error ?? ''}`,
      );
    const warned = r.trialReports.find((t) => t.warning !== undefined);
    if (warned !== undefined)
      lines.push(
        `WARNING ${r.name}: ${r.warnedTrials}/${r.trials} trial(s): ${warned.warning ?? ''} (allowed by allowNoSuccess)`,
      );
  }
  const violated = reports.filter((r) => r.violatedTrials > 0);
  const broken = reports.filter((r) => r.error !== undefined || r.erroredTrials > 0);
  if (violated.length > 0) lines.push(`races found in: ${violated.map((r) => r.name).join(', ')}`);
  if (broken.length > 0)
    lines.push(
      `no verdict for: ${broken.map((r) => r.name).join(', ')} (errors above)${violated.length === 0 ? '; no race was found in what did run' : ''}`,
    );
  if (violated.length === 0 && broken.length === 0)
    lines.push(
      `no invariant violated in ${reports.reduce((n, r) => n + r.trials, 0)} trial(s) of ${reports.length} scenario(s)`,
    );
  return lines.join('\n');
}

/** `--target` must be a URL a burst can go to. */
const targetUrl = (value: string): string => {
  if (!isHttpUrl(value))
    throw new CommanderArgumentError(`expected an http:// or https:// URL, got "${value}"`);
  return value;
};

const headerName = (value: string): string => {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value))
    throw new CommanderArgumentError(`expected an HTTP header name, got "${value}"`);
  return value;
};

/** An output file must be writable before the first burst is sent, not after the last. */
async function assertWritable(option: string, file: string): Promise<void> {
  const existing = await stat(file).catch(() => undefined);
  try {
    if (existing?.isDirectory() === true) throw new Error('it is a directory');
    await access(existing === undefined ? dirname(resolve(file)) : file, constants.W_OK);
  } catch (error) {
    throw new InvalidArgumentError(
      option,
      'a file path that can be written',
      `${file} (${(error as { code?: string }).code === 'ENOENT' ? 'its directory does not exist' : messageOf(error)})`,
    );
  }
}

interface RunOptions {
  target?: string;
  trials?: number;
  count?: number;
  protocol?: 'http1' | 'http2' | 'http1-pipeline';
  maxRequests: number;
  maxDurationMs: number;
  settleMs: number;
  warmup: boolean;
  allowNoSuccess?: boolean;
  arrivalHeader: string;
  delay?: Record<string, number>;
  proxy?: string;
  dbDelay?: DbDelay[];
  history?: string;
  json?: boolean;
  junit?: string;
  html?: string;
}

/** `--delay point=ms` (repeatable, or comma-separated) into one map. */
function collectDelay(
  value: string,
  previous: Record<string, number> | undefined,
): Record<string, number> {
  let parsed: Map<string, number>;
  try {
    parsed = parseDelays(value, 30_000, '--delay');
  } catch (error) {
    throw new CommanderArgumentError(messageOf(error));
  }
  if (parsed.size === 0) throw new CommanderArgumentError('--delay needs point=ms');
  return { ...previous, ...Object.fromEntries(parsed) };
}

const slug = (name: string): string =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '') || 'scenario';

/** Each trial's history as `<scenario>-trial-<n>.json`, in the shape `raceguard check` reads. */
async function writeHistories(dir: string, reports: readonly ScenarioReport[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [index, report] of reports.entries()) {
    for (const trial of report.trialReports) {
      if (trial.history === undefined) continue;
      const file = join(dir, `${index + 1}-${slug(report.name)}-trial-${trial.trial + 1}.json`);
      const { model, operations } = trial.history;
      await writeFile(
        file,
        `${JSON.stringify({ ...(model !== undefined && { model }), operations }, null, 2)}\n`,
      );
    }
  }
}

/** A page per non-linearizable trial history, next to the HTML report; the links for the report. */
async function writeHistoryPages(
  html: string,
  reports: readonly ScenarioReport[],
): Promise<Map<string, string>> {
  const links = new Map<string, string>();
  const folder = `${basename(html)}.histories`;
  for (const [index, report] of reports.entries()) {
    for (const trial of report.trialReports) {
      const history = trial.history;
      if (history?.verdict !== 'not-linearizable') continue;
      await mkdir(join(dirname(html), folder), { recursive: true });
      const name = `${index + 1}-trial-${trial.trial + 1}.html`;
      const prefix = new Set(history.minimalPrefix ?? []);
      await writeFile(
        join(dirname(html), folder, name),
        linearizabilityHtml({
          file: `${report.name}, trial ${trial.trial + 1}`,
          model: history.model ?? 'unknown',
          verdict: history.verdict,
          operations: history.operations,
          violating: history.operations,
          minimalPrefix: history.operations.filter((_, at) => prefix.has(at)),
          ...(history.culprit !== undefined && { culprit: history.operations[history.culprit]! }),
        }),
      );
      links.set(`${index + 1}:${trial.trial + 1}`, `${folder}/${name}`);
    }
  }
  return links;
}

/** A scenario to run, or the reason it cannot. */
type Planned =
  | { readonly file: string; readonly scenario: ScenarioDefinition }
  | {
      readonly file: string;
      readonly error: string;
      readonly name: string;
      readonly target: string;
    };

/** Load every file and check every cap before anything is sent. */
async function plan(args: readonly string[], opts: RunOptions): Promise<Planned[]> {
  const planned: Planned[] = [];
  for (const argument of args) {
    let files: string[];
    try {
      files = await scenarioFiles(argument);
    } catch (error) {
      planned.push({ file: argument, name: argument, target: '-', error: messageOf(error) });
      continue;
    }
    for (const file of files) {
      try {
        for (const scenario of await loadScenarios(file)) {
          const trials = opts.trials ?? scenario.trials ?? 10;
          const count = opts.count ?? scenario.burst.count;
          const error =
            trials * count > opts.maxRequests
              ? `${trials} trials × ${count} requests = ${trials * count} exceeds the cap of ${opts.maxRequests} (raise --max-requests if you mean it)`
              : undefined;
          planned.push(
            error === undefined
              ? { file, scenario }
              : { file, name: scenario.name, target: opts.target ?? scenario.target, error },
          );
        }
      } catch (error) {
        planned.push({ file, name: file, target: '-', error: messageOf(error) });
      }
    }
  }
  return planned;
}

/** `raceguard run`. */
export function runCommand(): Command {
  return new Command('run')
    .description(
      'Release synchronised bursts (HTTP/1.1 last-byte synchronisation, or HTTP/2 single-packet) at an API, as described by scenario files or directories of them (.ts, .js, .json or .yaml), and check their invariants. Exits 0 when clean, 1 when a race was found, 2 when a scenario or trial could not run (errors outrank races: no verdict is a failure), 130 when interrupted.',
    )
    .argument('<files...>', 'scenario files, or directories (every scenario file in them, sorted)')
    .addOption(
      new Option(
        '--target <url>',
        "base URL of the API (overrides each scenario's target)",
      ).argParser(targetUrl),
    )
    .addOption(
      new Option(
        '-t, --trials <n>',
        "bursts per scenario (overrides the scenario's trials)",
      ).argParser(integer(1)),
    )
    .addOption(
      new Option(
        '-n, --count <n>',
        "requests per burst (overrides the scenario's burst.count)",
      ).argParser(integer(1, 10_000)),
    )
    .addOption(
      new Option('--max-requests <n>', 'refuse scenarios that would send more requests in total')
        .default(10_000)
        .argParser(integer(1)),
    )
    .addOption(
      new Option('--max-duration-ms <ms>', 'stop starting trials after this long, per scenario')
        .default(300_000)
        .argParser(integer(1)),
    )
    .addOption(
      new Option(
        '--settle-ms <ms>',
        'pause between the partial writes and the release of the final bytes',
      )
        .default(20)
        .argParser(integer(0)),
    )
    .option(
      '--no-warmup',
      'skip the unscored burst fired before the first trial (it keeps cold connections and code out of the scored trials)',
    )
    .addOption(
      new Option(
        '--protocol <protocol>',
        "overrides each scenario's burst.protocol (http1-pipeline: the whole burst in one write on one connection, for servers that handle pipelined requests concurrently)",
      ).choices(['http1', 'http2', 'http1-pipeline']),
    )
    .option(
      '--allow-no-success',
      'a burst in which no request got a 2xx is a warning, not an error (for APIs where every request may fail)',
    )
    .addOption(
      new Option(
        '--arrival-header <name>',
        'response header with the time the target received the request (ms since the epoch)',
      )
        .default(ARRIVAL_HEADER)
        .argParser(headerName),
    )
    .addOption(
      new Option(
        '--delay <point=ms>',
        'widen a named window in the service under test: its delayPoint(point) pauses ms during each burst (repeatable; only a service in test mode honours it)',
      )
        .argParser(collectDelay)
        .default(undefined),
    )
    .option(
      '--proxy <url>',
      "the control URL of a raceguard proxy in front of the service's database (for --db-delay and a scenario's dbDelays)",
    )
    .addOption(
      new Option(
        '--db-delay <pattern=ms>',
        'hold back the results of matching statements during the run: SELECT, products, "SELECT products" or /regex/ (repeatable; needs --proxy)',
      ).argParser(collectDbDelay),
    )
    .option(
      '--history <dir>',
      "write each trial's burst as a history file (raceguard check reads it: the file records its model)",
    )
    .option('--json', 'print the reports as JSON on stdout (trial numbers in it are 0-based)')
    .option('--junit <file>', 'also write a JUnit XML report (one test case per invariant)')
    .option('--html <file>', 'also write a self-contained HTML report with charts')
    .action(runAction);
}

/** The action of `raceguard run`: plan, run each scenario, write the reports, set the exit code. */
async function runAction(args: string[], opts: RunOptions): Promise<void> {
  if (opts.junit !== undefined) await assertWritable('--junit', opts.junit);
  if (opts.html !== undefined) await assertWritable('--html', opts.html);
  const planned = await plan(args, opts);
  // The report carries every error; with --json, people read stderr.
  const warn = (line: string): void => {
    if (opts.json === true) process.stderr.write(`raceguard: ${line}\n`);
  };
  for (const p of planned)
    if ('error' in p) warn(p.name === p.file ? p.error : `${p.name} (${p.file}): ${p.error}`);
  const { reports, interrupted } = await runPlanned(planned, opts, warn);
  if (opts.junit !== undefined) await writeFile(opts.junit, toJUnit(reports));
  if (opts.history !== undefined) await writeHistories(opts.history, reports);
  if (opts.html !== undefined) {
    await writeFile(
      opts.html,
      toHtml(reports, new Date(), await writeHistoryPages(opts.html, reports)),
    );
  }
  process.stdout.write(
    opts.json === true ? `${toJson(reports)}\n` : `${formatRunReport(reports)}\n`,
  );
  if (interrupted !== undefined) throw interrupted;
  process.exitCode = worstCode(reports);
}

/** The reports as `--json` prints them: each trial's latencies counted, not listed. */
function toJson(reports: readonly ScenarioReport[]): string {
  return JSON.stringify(
    {
      scenarios: reports.map(({ trialReports, ...rest }) => ({
        ...rest,
        trialReports: trialReports.map(({ latenciesMs, ...t }) => ({
          ...t,
          latencyCount: latenciesMs.length,
        })),
      })),
    },
    null,
    2,
  );
}

/**
 * Run the planned scenarios in order, one report each (a scenario that
 * could not run gets an errored one). On Ctrl-C or SIGTERM the scenarios
 * that finished are still reported, the rest are named as having no
 * verdict, and the interruption is returned.
 */
async function runPlanned(
  planned: readonly Planned[],
  opts: RunOptions,
  warn: (line: string) => void,
): Promise<{ reports: ScenarioReport[]; interrupted: AbortedError | undefined }> {
  const progress = createProgress();
  const reports: ScenarioReport[] = [];
  /** The planned scenario running (or next to run). */
  let index = 0;
  try {
    await interruptible(async (signal) => {
      for (; index < planned.length; index++) {
        const p = planned[index] as Planned;
        if ('error' in p) reports.push(erroredReport(p.name, p.target, p.error, p.file));
        else reports.push(await runPlannedScenario(p, opts, signal, progress, warn));
      }
    });
  } catch (error) {
    if (!(error instanceof AbortedError)) throw error;
    for (const [i, p] of planned.entries()) {
      if (i < index) continue;
      const target = 'error' in p ? p.target : (opts.target ?? p.scenario.target);
      const name = 'error' in p ? p.name : p.scenario.name;
      const why =
        i === index ? 'interrupted while it ran: no verdict' : 'not run: the run was interrupted';
      reports.push(erroredReport(name, target, why, p.file));
    }
    return { reports, interrupted: error };
  } finally {
    progress.done();
  }
  return { reports, interrupted: undefined };
}

/** One scenario with the command's options; a failure to run is an errored report. */
async function runPlannedScenario(
  { scenario, file }: Extract<Planned, { readonly scenario: unknown }>,
  opts: RunOptions,
  signal: AbortSignal,
  progress: ReturnType<typeof createProgress>,
  warn: (line: string) => void,
): Promise<ScenarioReport> {
  const trials = opts.trials ?? scenario.trials ?? 10;
  try {
    const report = await runScenario(scenario, {
      ...(opts.target !== undefined && { target: opts.target }),
      ...(opts.trials !== undefined && { trials: opts.trials }),
      ...(opts.count !== undefined && { count: opts.count }),
      ...(opts.protocol !== undefined && { protocol: opts.protocol }),
      ...(opts.allowNoSuccess === true && { allowNoSuccess: true }),
      arrivalHeader: opts.arrivalHeader,
      ...(opts.delay !== undefined && { delays: opts.delay }),
      ...(opts.proxy !== undefined && { proxy: opts.proxy }),
      ...(opts.dbDelay !== undefined && { dbDelays: opts.dbDelay }),
      ...(opts.history !== undefined && { recordHistory: true }),
      maxRequests: opts.maxRequests,
      maxDurationMs: opts.maxDurationMs,
      settleMs: opts.settleMs,
      warmup: opts.warmup,
      signal,
      onTrial: (t) => progress.update(t.trial + 1, trials, scenario.name),
    });
    return { ...report, file };
  } catch (error) {
    if (error instanceof AbortedError) throw error;
    warn(`${scenario.name} (${file}): ${messageOf(error)}`);
    return erroredReport(scenario.name, opts.target ?? scenario.target, messageOf(error), file);
  } finally {
    progress.done();
  }
}
