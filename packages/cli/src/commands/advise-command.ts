import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import { advise, type AdviceReport } from '../lab/advise.js';
import { ROW_STRATEGIES, type RowStrategy } from '../lab/row-workload.js';
import { integer, interruptible } from './options.js';
import { createProgress } from './progress.js';
import { outputWidth, renderTable, wrap } from './table.js';

/** `--key id=1` (repeatable, or comma-separated) into one object. */
function collectKey(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const key = { ...previous };
  for (const part of value.split(',')) {
    const at = part.indexOf('=');
    if (at <= 0) throw new CommanderArgumentError(`expected column=value, got "${part}"`);
    key[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return key;
}

const fraction = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n < 1))
    throw new CommanderArgumentError(`expected a fraction from 0 to below 1, got "${value}"`);
  return n;
};

const strategies = (value: string): RowStrategy[] =>
  value.split(',').map((item) => {
    const name = item.trim();
    if (!(ROW_STRATEGIES as readonly string[]).includes(name))
      throw new CommanderArgumentError(`"${name}" is not one of: ${ROW_STRATEGIES.join(', ')}`);
    return name as RowStrategy;
  });

/** The report as a table and the verdict lines. */
export function formatAdvice(report: AdviceReport): string {
  const table = renderTable(
    ['rank', 'strategy', 'verdict', 'ops/s', 'p50 / p99 ms', 'why not'],
    report.results.map((r) => [
      r.rank ?? '-',
      r.strategy,
      r.verdict,
      Math.round(r.opsPerSec),
      `${r.p50Ms.toFixed(1)} / ${r.p99Ms.toFixed(1)}`,
      r.reason ?? '-',
    ]),
  );
  return [
    table,
    '',
    ...wrap(
      `${report.database === 'mysql' ? 'MySQL / MariaDB' : 'PostgreSQL'}: a copy of one row of ${report.table} (nothing of the table itself is written; the copy's ${report.column} starts at ${report.copyStartsAt.toLocaleString('en-US')} so no candidate runs out); ${report.concurrency} concurrent callers, ${Math.round(report.reads * 100)}% reads, writes take ${report.amount} from ${report.column}, ${report.durationMs} ms per candidate${report.addedVersionColumn ? '; the table has no version column: the copy got one for the optimistic candidate (add it to use that fix)' : ''}`,
      outputWidth(),
    ),
    report.recommendation === undefined
      ? 'no candidate was correct on this workload'
      : `fastest correct fix on this workload: ${report.recommendation}`,
  ].join('\n');
}

/** `raceguard advise`. */
export function adviseCommand(): Command {
  return new Command('advise')
    .description(
      'Measure which fix of a hot row is correct and fastest on your own row shape and contention: the row is copied into a scratch schema (PostgreSQL) or database (MySQL), every candidate runs against the copy, and the row is checked against what the accepted writes took. Exits 0 when a fix is correct, 1 when none is.',
    )
    .requiredOption('--database <url>', 'postgres://... or mysql://host/database')
    .requiredOption('--table <name>', 'the table (schema.table or database.table to qualify it)')
    .requiredOption('--key <column=value>', 'the row (repeatable, or comma-separated)', collectKey)
    .requiredOption('--column <name>', 'the integer column the writes take from')
    .addOption(
      new Option('-c, --concurrency <n>', 'concurrent callers')
        .default(64)
        .argParser(integer(1, 1000)),
    )
    .addOption(
      new Option('--reads <fraction>', 'fraction of operations that only read the row')
        .default(0)
        .argParser(fraction),
    )
    .addOption(new Option('--amount <n>', 'taken per write').default(1).argParser(integer(1)))
    .addOption(
      new Option('--duration-ms <ms>', 'how long each candidate runs')
        .default(2000)
        .argParser(integer(100)),
    )
    .addOption(
      new Option(
        '--strategy <names>',
        `candidates, comma-separated (default: all of ${ROW_STRATEGIES.join(', ')}; combined on PostgreSQL only)`,
      ).argParser(strategies),
    )
    .option('--json', 'print the report as JSON on stdout')
    .action(
      async (opts: {
        database: string;
        table: string;
        key: Record<string, string>;
        column: string;
        concurrency: number;
        reads: number;
        amount: number;
        durationMs: number;
        strategy?: RowStrategy[];
        json?: boolean;
      }) => {
        const progress = createProgress();
        try {
          const report = await interruptible((signal) =>
            advise({
              databaseUrl: opts.database,
              table: opts.table,
              key: opts.key,
              column: opts.column,
              concurrency: opts.concurrency,
              reads: opts.reads,
              amount: opts.amount,
              durationMs: opts.durationMs,
              ...(opts.strategy !== undefined && { strategies: opts.strategy }),
              signal,
              onCandidate: (strategy, index, total) => progress.update(index, total, strategy),
            }),
          );
          progress.done();
          process.stdout.write(
            opts.json === true
              ? `${JSON.stringify(report, null, 2)}\n`
              : `${formatAdvice(report)}\n`,
          );
          process.exitCode = report.recommendation === undefined ? 1 : 0;
        } finally {
          progress.done();
        }
      },
    );
}
