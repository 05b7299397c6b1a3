/**
 * raceguard/explore on the race corpus (test/explore/corpus.ts): median runs
 * to the first failing schedule per bug for each strategy and for fast-check's
 * scheduler driving the very same programs, then every fixed twin under
 * 10,000 schedules of the default portfolio.
 *
 *   npm run bench:explore [-- --trials 15 --cap 3000 --fixed-runs 10000 --json]
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import pg from 'pg';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import {
  explore,
  DEFAULT_PORTFOLIO,
  type PortfolioMember,
  type StrategyName,
} from '../packages/raceguard/dist/explore/index.js';
import { wrapForExecution } from '../packages/raceguard/dist/explore/intercept.js';
import {
  createScratchSchema,
  startRedisServer,
  usePostgres,
} from '../packages/raceguard/dist/testing/index.js';
import {
  CORPUS,
  prepareCorpus,
  type CorpusEnv,
  type CorpusEntry,
  type Harness,
} from '../test/explore/corpus.js';

const { values: args } = parseArgs({
  options: {
    trials: { type: 'string', default: '15' },
    cap: { type: 'string', default: '3000' },
    'fixed-runs': { type: 'string', default: '10000' },
    only: { type: 'string' },
    portfolio: { type: 'string' },
    contenders: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const trials = Number(args.trials);
const cap = Number(args.cap);
const fixedRuns = Number(args['fixed-runs']);
const portfolio =
  (args.portfolio?.split(',') as PortfolioMember[] | undefined) ?? DEFAULT_PORTFOLIO;
const log = (line: string) => process.stderr.write(`${line}\n`);

const redisServer = await startRedisServer();
const redis = new Redis(redisServer.url);
const postgres = await usePostgres();
const admin = new pg.Pool({ connectionString: postgres.url, max: 2 });
const schema = await createScratchSchema(admin, 'raceguard_bench_explore');
const pool = new pg.Pool({
  connectionString: postgres.url,
  max: 8,
  options: schema.connectionOptions,
});
await prepareCorpus(pool);
const env: CorpusEnv = { pool, redis, prefix: 'bench-explore:' };

/** fast-check's scheduler behind the corpus's harness: every point and every intercepted call is a scheduled promise. */
function fastCheckHarness(s: fc.Scheduler): Harness {
  const interceptor = {
    call: <T>(label: string, _footprint: unknown, invoke: () => Promise<T> | T) =>
      s.schedule(Promise.resolve().then(invoke), label),
  };
  return {
    spawn: (name, fn) => s.schedule(Promise.resolve(), `${name} start`).then(fn),
    point: (label) => s.schedule(Promise.resolve(), label).then(() => undefined),
    wrap: (target, options) => wrapForExecution(interceptor, target, options),
    sleep: (ms) => s.schedule(Promise.resolve(), `sleep ${ms}`).then(() => undefined),
  };
}

async function fastCheckRuns(entry: CorpusEntry, seed: number): Promise<number | undefined> {
  const result = await fc.check(
    fc.asyncProperty(fc.scheduler(), async (s) => {
      await s.waitFor(entry.buggy(fastCheckHarness(s), env));
    }),
    { numRuns: cap, seed, endOnFailure: true, timeout: 1000 },
  );
  return result.failed ? result.numRuns : undefined;
}

async function raceguardRuns(
  entry: CorpusEntry,
  strategy: StrategyName,
  depth: number | undefined,
  seed: number,
) {
  const report = await explore((ctx) => entry.buggy(ctx, env), {
    runs: cap,
    strategy,
    ...(depth === undefined ? {} : { depth }),
    seed,
    shrink: false,
    portfolio,
  });
  return report.failure === undefined ? undefined : report.runs;
}

/** The q-quantile (0.5: the median) of runs to failure, a miss counting as infinitely many. */
const quantile = (values: readonly (number | undefined)[], q: number): number | undefined => {
  const sorted = values.map((value) => value ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
  const at = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
  return Number.isFinite(at) ? at : undefined;
};
const median = (values: readonly (number | undefined)[]) => quantile(values, 0.5);

const contenders: {
  name: string;
  run: (entry: CorpusEntry, seed: number) => Promise<number | undefined>;
}[] = [
  { name: 'portfolio', run: (entry, seed) => raceguardRuns(entry, 'portfolio', 3, seed) },
  { name: 'random', run: (entry, seed) => raceguardRuns(entry, 'random', 3, seed) },
  { name: 'pct:2', run: (entry, seed) => raceguardRuns(entry, 'pct', 2, seed) },
  { name: 'pct:3', run: (entry, seed) => raceguardRuns(entry, 'pct', 3, seed) },
  { name: 'pct', run: (entry, seed) => raceguardRuns(entry, 'pct', undefined, seed) },
  { name: 'pos', run: (entry, seed) => raceguardRuns(entry, 'pos', 3, seed) },
  { name: 'systematic', run: (entry, seed) => raceguardRuns(entry, 'systematic', 3, seed) },
  { name: 'fast-check', run: fastCheckRuns },
];

const chosen =
  args.contenders === undefined
    ? contenders
    : contenders.filter((contender) => args.contenders!.split(',').includes(contender.name));

interface BugResult {
  bug: string;
  backend: string;
  preemptions: number;
  medianRuns: Record<string, number | null>;
  p90Runs: Record<string, number | null>;
  /** Wall time per run over every trial (a miss counts its cap of runs). */
  msPerRun: Record<string, number>;
  portfolioVsFastCheck: number | null;
}
interface FixedResult {
  bug: string;
  schedules: number;
  passed: boolean;
  ms: number;
  /** The systematic search within 2 preemptions: schedules tried, and whether that was all of them. */
  systematicSchedules: number;
  systematicExhausted: boolean;
  systematicPassed: boolean;
  /** Every schedule, unreduced and unbounded: schedules to exhaustion (capped at --fixed-runs). */
  fullSchedules: number;
  fullExhausted: boolean;
  /** The partial-order reduced search (the default systematic search). */
  reducedSchedules: number;
  reducedExhausted: boolean;
  reducedPassed: boolean;
}
const bugs: BugResult[] = [];
const fixed: FixedResult[] = [];
const entries = CORPUS.filter((entry) => args.only === undefined || entry.name.includes(args.only));

for (const entry of trials > 0 ? entries : []) {
  const medianRuns: Record<string, number | null> = {};
  const p90Runs: Record<string, number | null> = {};
  const msPerRun: Record<string, number> = {};
  for (const contender of chosen) {
    // The systematic search is deterministic: one trial says it all.
    const count = contender.name === 'systematic' ? 1 : trials;
    const runs: (number | undefined)[] = [];
    const started = performance.now();
    for (let trial = 0; trial < count; trial += 1)
      runs.push(await contender.run(entry, 1000 + trial));
    const total = runs.reduce<number>((sum, value) => sum + (value ?? cap), 0);
    msPerRun[contender.name] = Math.round(((performance.now() - started) / total) * 100) / 100;
    medianRuns[contender.name] = median(runs) ?? null;
    p90Runs[contender.name] = quantile(runs, 0.9) ?? null;
  }
  const portfolio = medianRuns['portfolio'];
  const fastCheck = medianRuns['fast-check'];
  bugs.push({
    bug: entry.name,
    backend: entry.backend,
    preemptions: entry.preemptions,
    medianRuns,
    p90Runs,
    msPerRun,
    portfolioVsFastCheck:
      portfolio == null || fastCheck == null
        ? null
        : Math.round((fastCheck / portfolio) * 100) / 100,
  });
  log(`${entry.name}: ${JSON.stringify(medianRuns)}`);
}

for (const entry of fixedRuns > 0 ? entries : []) {
  const started = performance.now();
  const report = await explore((ctx) => entry.fixed(ctx, env), { runs: fixedRuns, seed: 42 });
  const ms = Math.round(performance.now() - started);
  const searched = await explore((ctx) => entry.fixed(ctx, env), {
    strategy: 'systematic',
    maxPreemptions: 2,
    runs: fixedRuns,
  });
  const full = await explore((ctx) => entry.fixed(ctx, env), {
    strategy: 'systematic',
    maxPreemptions: 1000,
    runs: fixedRuns,
  });
  const reduced = await explore((ctx) => entry.fixed(ctx, env), {
    strategy: 'systematic',
    runs: fixedRuns,
  });
  fixed.push({
    fullSchedules: full.runs,
    fullExhausted: full.exhausted,
    reducedSchedules: reduced.runs,
    reducedExhausted: reduced.exhausted,
    reducedPassed: reduced.failure === undefined,
    bug: entry.name,
    schedules: report.runs,
    passed: report.failure === undefined,
    ms,
    systematicSchedules: searched.runs,
    systematicExhausted: searched.exhausted,
    systematicPassed: searched.failure === undefined,
  });
  log(
    `${entry.name} fixed: ${report.failure === undefined ? 'passed' : report.failure.message} (${report.runs} schedules)`,
  );
}

await pool.end();
await schema.drop();
await admin.end();
await postgres.stop();
redis.disconnect();
await redisServer.stop();

const show = (value: number | null | undefined) => (value == null ? `>${cap}` : String(value));
if (args.json) {
  process.stdout.write(`${JSON.stringify({ trials, cap, bugs, fixed }, null, 2)}\n`);
} else {
  process.stdout.write(
    `runs to the first failing schedule, median / p90 (${trials} seeds, cap ${cap})\n` +
      renderTable(
        [
          'bug',
          'backend',
          'preemptions',
          ...chosen.map((c) => c.name),
          'fast-check / portfolio',
          'ms/run portfolio, fast-check',
        ],
        bugs.map((bug) => [
          bug.bug,
          bug.backend,
          String(bug.preemptions),
          ...chosen.map((c) => `${show(bug.medianRuns[c.name])} / ${show(bug.p90Runs[c.name])}`),
          bug.portfolioVsFastCheck == null ? '-' : `${bug.portfolioVsFastCheck}x`,
          `${bug.msPerRun['portfolio'] ?? '-'}, ${bug.msPerRun['fast-check'] ?? '-'}`,
        ]),
      ) +
      `\nfixed twins under ${fixedRuns} schedules of the portfolio\n` +
      renderTable(
        [
          'bug',
          'schedules',
          'verdict',
          'ms',
          'systematic (<= 2 preemptions)',
          'every schedule',
          'reduced (DPOR)',
        ],
        fixed.map((f) => [
          f.bug,
          String(f.schedules),
          f.passed ? 'passed' : 'FAILED',
          String(f.ms),
          `${f.systematicPassed ? 'passed' : 'FAILED'} ${f.systematicSchedules}${f.systematicExhausted ? ' (all)' : ''}`,
          `${f.fullSchedules}${f.fullExhausted ? ' (all)' : '+'}`,
          `${f.reducedPassed ? 'passed' : 'FAILED'} ${f.reducedSchedules}${f.reducedExhausted ? ' (all)' : '+'}`,
        ]),
      ) +
      '\n',
  );
}
