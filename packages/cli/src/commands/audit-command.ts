import { Command, Option } from 'commander';
import { messageOf } from '../arguments.js';
import { auditScenario, type AuditResult } from '../proxy/audit.js';
import { loadScenarios, scenarioFiles } from '../run/load.js';
import { integer, interruptible } from './options.js';
import { renderTable } from './table.js';

interface AuditFlags {
  readonly proxy: string;
  readonly target?: string;
  readonly confirm?: boolean;
  readonly requests: number;
  readonly confirmTrials: number;
  readonly json?: boolean;
}

/** A result line of a file that could not be audited. */
interface AuditError {
  readonly file: string;
  readonly scenario?: string;
  readonly error: string;
}

/** `raceguard audit`. */
export function auditCommand(): Command {
  return new Command('audit')
    .description(
      "Find races from one sequential pass: run each scenario's setup, send its burst request once or twice, one at a time, and analyse the SQL the service sent through `raceguard proxy` for what two concurrent copies could do under the transaction's isolation level (lost update, check-then-act, check-then-insert, duplicate request, capped count, write skew, document overwrite), naming the two statements and the fix. --confirm attacks each finding with the scenario's burst while the proxy holds back the read. Exit 0 no race, 1 a race, 2 an error.",
    )
    .argument('<files...>', 'scenario files or directories (as raceguard run takes)')
    .requiredOption('--proxy <url>', "the proxy's control URL (raceguard proxy --control)")
    .option('--target <url>', "overrides each scenario's target")
    .addOption(
      new Option('--requests <n>', 'requests sent one at a time per scenario')
        .default(2)
        .argParser(integer(1)),
    )
    .option(
      '--confirm',
      "attack each finding with a burst and a delay on its read; the scenario's checks decide",
    )
    .addOption(
      new Option('--confirm-trials <n>', 'bursts per finding with --confirm')
        .default(5)
        .argParser(integer(1)),
    )
    .option('--json', 'print { results: [...] } as JSON')
    .action(auditAction);
}

async function auditAction(files: string[], flags: AuditFlags): Promise<void> {
  const results: (AuditResult & { file: string })[] = [];
  const errors: AuditError[] = [];
  await interruptible(async (signal) => {
    for (const argument of files) {
      let paths: string[];
      try {
        paths = await scenarioFiles(argument);
      } catch (error) {
        errors.push({ file: argument, error: messageOf(error) });
        continue;
      }
      for (const file of paths) {
        try {
          for (const scenario of await loadScenarios(file)) {
            process.stderr.write(`raceguard audit: ${scenario.name} ...\n`);
            try {
              const result = await auditScenario(scenario, {
                proxy: flags.proxy,
                ...(flags.target !== undefined && { target: flags.target }),
                requests: flags.requests,
                confirm: flags.confirm === true,
                confirmTrials: flags.confirmTrials,
                signal,
              });
              results.push({ ...result, file });
            } catch (error) {
              if (signal.aborted) throw error;
              errors.push({ file, scenario: scenario.name, error: messageOf(error) });
            }
          }
        } catch (error) {
          if (signal.aborted) throw error;
          errors.push({ file, error: messageOf(error) });
        }
      }
    }
  });
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify({ results: results.map(jsonOf), errors }, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatAudit(results, errors)}\n`);
  }
  process.exitCode = errors.length > 0 ? 2 : results.some((r) => r.verdict === 'race') ? 1 : 0;
}

/** The shape `--json` prints: one entry per finding (or one per scenario without findings). */
function jsonOf(result: AuditResult & { file: string }): Record<string, unknown> {
  return {
    file: result.file,
    scenario: result.scenario,
    verdict: result.verdict,
    ...(result.reason !== undefined && { reason: result.reason }),
    statements: result.statements,
    findings: result.findings,
    safe: result.safe,
  };
}

/** The results as a table, then each finding's statements, why and fix. */
export function formatAudit(
  results: readonly (AuditResult & { file: string })[],
  errors: readonly AuditError[],
): string {
  const rows = results.flatMap((r) =>
    r.findings.length === 0
      ? [[r.scenario, r.verdict, '-', '-', r.reason ?? `${r.safe.length} safe write(s)`, '-']]
      : r.findings.map((f) => [
          r.scenario,
          r.verdict,
          f.anomaly,
          `${f.table} (${f.columns.join(', ')})`,
          f.isolation,
          f.confirmed === null ? '-' : f.confirmed ? 'confirmed' : 'not confirmed',
        ]),
  );
  const table = renderTable(
    ['scenario', 'verdict', 'anomaly', 'table', 'isolation', 'confirm'],
    rows,
  );
  const details = results.flatMap((r) =>
    r.findings.map(
      (f) =>
        `${r.scenario}: ${f.anomaly} on ${f.table}\n  read:  ${f.statements[0]}\n  write: ${f.statements[1]}\n  why:   ${f.why}\n  fix:   ${f.fix}${f.confirmation === undefined ? '' : `\n  confirm: ${f.confirmation}`}`,
    ),
  );
  const failed = errors.map(
    (e) => `error: ${e.file}${e.scenario === undefined ? '' : ` (${e.scenario})`}: ${e.error}`,
  );
  return [table, ...details, ...failed].join('\n\n');
}
