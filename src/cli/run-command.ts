/**
 * `raceguard run <scenario files...>`: synchronised bursts at any HTTP API,
 * then a verdict on the data. Exit codes: 0 clean, 1 an invariant was
 * violated, 2 usage or scenario errors (or trials that could not run).
 */
import { Command, Option } from 'commander';
import { writeFile } from 'node:fs/promises';
import { loadScenarios } from '../run/load.js';
import { toHtml } from '../run/report-html.js';
import { toJUnit } from '../run/report-junit.js';
import { runScenario, type ScenarioReport } from '../run/run-scenario.js';
import type { ScenarioDefinition } from '../run/scenario.js';
import { integer, interruptible } from './options.js';
import { createProgress } from './progress.js';
import { renderTable } from './table.js';

const ms = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(2);

/** The human-readable report: one table row per scenario, then an explanation per violated invariant. */
export function formatRunReport(reports: readonly ScenarioReport[]): string {
  const table = renderTable(
    [
      'scenario',
      'trials',
      'violated',
      'errored',
      'invariants violated',
      'statuses',
      'send spread ms (p50/p95)',
      'arrival spread ms (p50/p95)',
      'p50 ms',
      'p99 ms',
    ],
    reports.map((r) => [
      r.name,
      r.trials,
      r.violatedTrials,
      r.erroredTrials,
      Object.entries(r.invariants)
        .filter(([, v]) => v.violations > 0)
        .map(([name, v]) => `${name}=${v.violations}`)
        .join(' ') || '-',
      Object.entries(r.statuses)
        .map(([status, n]) => `${status}×${n}`)
        .join(' '),
      `${ms(r.sendSpreadMs.median)} / ${ms(r.sendSpreadMs.p95)}`,
      r.arrivalSpreadMs === null
        ? '-'
        : `${ms(r.arrivalSpreadMs.median)} / ${ms(r.arrivalSpreadMs.p95)}`,
      ms(r.latencyMs.p50),
      ms(r.latencyMs.p99),
    ]),
  );
  const lines = [table, ''];
  for (const r of reports) {
    for (const [name, v] of Object.entries(r.invariants)) {
      if (v.violations > 0)
        lines.push(
          `RACE ${r.name}: ${name} violated in ${v.violations}/${r.trials} trials; ${v.example ?? ''}`,
        );
    }
    const errored = r.trialReports.find((t) => t.error !== undefined);
    if (errored !== undefined)
      lines.push(
        `ERROR ${r.name}: ${r.erroredTrials} trial(s) could not run; trial ${errored.trial + 1}: ${errored.error ?? ''}`,
      );
  }
  const violated = reports.filter((r) => r.violatedTrials > 0);
  lines.push(
    violated.length === 0
      ? `no invariant violated in ${reports.reduce((n, r) => n + r.trials, 0)} trial(s)`
      : `races found in: ${violated.map((r) => r.name).join(', ')}`,
  );
  return lines.join('\n');
}

/** `raceguard run`. */
export function runCommand(): Command {
  return new Command('run')
    .description(
      'Release synchronised bursts (HTTP/1.1 last-byte synchronisation, or HTTP/2 single-packet) at an API, as described by scenario files (.ts, .js, .json or .yaml), and check their invariants. Exits 0 when clean, 1 when a race was found, 2 on errors.',
    )
    .argument('<files...>', 'scenario files')
    .option('--target <url>', "base URL of the API (overrides each scenario's target)")
    .addOption(
      new Option(
        '-t, --trials <n>',
        "bursts per scenario (overrides the scenario's trials)",
      ).argParser(integer(1)),
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
    .addOption(
      new Option('--protocol <protocol>', "overrides each scenario's burst.protocol").choices([
        'http1',
        'http2',
      ]),
    )
    .option('--json', 'print the reports as JSON on stdout')
    .option('--junit <file>', 'also write a JUnit XML report (one test case per invariant)')
    .option('--html <file>', 'also write a self-contained HTML report with charts')
    .action(
      async (
        files: string[],
        opts: {
          target?: string;
          trials?: number;
          protocol?: 'http1' | 'http2';
          maxRequests: number;
          maxDurationMs: number;
          settleMs: number;
          json?: boolean;
          junit?: string;
          html?: string;
        },
      ) => {
        const scenarios: ScenarioDefinition[] = [];
        for (const file of files) scenarios.push(...(await loadScenarios(file)));
        const progress = createProgress();
        const reports: ScenarioReport[] = [];
        try {
          await interruptible(async (signal) => {
            for (const scenario of scenarios) {
              const trials = opts.trials ?? scenario.trials ?? 10;
              reports.push(
                await runScenario(scenario, {
                  ...(opts.target !== undefined && { target: opts.target }),
                  ...(opts.trials !== undefined && { trials: opts.trials }),
                  ...(opts.protocol !== undefined && { protocol: opts.protocol }),
                  maxRequests: opts.maxRequests,
                  maxDurationMs: opts.maxDurationMs,
                  settleMs: opts.settleMs,
                  signal,
                  onTrial: (t) => progress.update(t.trial + 1, trials, scenario.name),
                }),
              );
              progress.done();
            }
          });
        } finally {
          progress.done();
        }
        if (opts.junit !== undefined) await writeFile(opts.junit, toJUnit(reports));
        if (opts.html !== undefined) await writeFile(opts.html, toHtml(reports));
        process.stdout.write(
          opts.json === true
            ? `${JSON.stringify({ scenarios: reports.map(({ trialReports, ...rest }) => ({ ...rest, trialReports: trialReports.map(({ latenciesMs, ...t }) => ({ ...t, latencyCount: latenciesMs.length })) })) }, null, 2)}\n`
            : `${formatRunReport(reports)}\n`,
        );
        process.exitCode = reports.some((r) => r.violatedTrials > 0)
          ? 1
          : reports.some((r) => r.erroredTrials > 0)
            ? 2
            : 0;
      },
    );
}
