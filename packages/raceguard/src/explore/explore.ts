import { throwIfAborted } from '../core/abort.js';
import { InvalidArgumentError } from '../core/errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertKnownOptions,
  assertOneOf,
  assertPlainObject,
  assertPositiveInteger,
  assertNonNegativeInteger,
} from '../core/validate.js';
import { createContext, type ExploreContext } from './context.js';
import { ExploreFailure, ReplayDivergedError } from './errors.js';
import { ioBaseline, type IoBaseline } from './quiet.js';
import { Execution, type ExecutionRecord } from './execution.js';
import { ANYTHING } from './footprint.js';
import { runSeed } from './random.js';
import { decodeSchedule, encodeSchedule, formatTrace } from './schedule.js';
import {
  defaultChoice,
  pctStrategy,
  posStrategy,
  prefixStrategy,
  randomStrategy,
  switchingStrategy,
  type Strategy,
  type StrategyName,
} from './strategies.js';
import { PartialOrderSearch } from './dpor.js';
import { boundedSearch, SystematicSearch, type ScheduleSearch } from './systematic.js';

/** A program to explore: spawn tasks, await them, assert (throw on a bad outcome). */
export type ExploreProgram = (ctx: ExploreContext) => Promise<void> | void;

/** Options of {@link explore}. */
export interface ExploreOptions {
  /**
   * How many schedules to try (fewer when the systematic search runs out).
   * @default 1000
   */
  readonly runs?: number;
  /**
   * How to pick schedules: `portfolio` (cycles through `portfolio`'s
   * members; by default a switch-biased random run, a run of the
   * partial-order reduced systematic search and a uniform random run, the
   * best measured on the race corpus; when the search has run every
   * interleaving, the exploration stops with `exhausted: true`), `random`,
   * `switching`, `pct`, `pos`, or `systematic` (every interleaving, one per
   * class of schedules that differ only in the order of steps that commute,
   * by dynamic partial-order reduction; with `maxPreemptions`, every schedule
   * with at most that many preemptions, fewest first, unreduced; the report
   * says when all were tried).
   * @default 'portfolio'
   */
  readonly strategy?: StrategyName;
  /**
   * PCT's bug depth d: d - 1 priority change points per run. Unset, each
   * run picks its own: PCT's runs cycle through depths 3 to D, D starting at
   * 3 and growing by one each time their count doubles from 30 (a bug's
   * depth is rarely known; a depth too low never finds it, one too high
   * finds a shallow bug more slowly).
   * @default adaptive
   */
  readonly depth?: number;
  /**
   * Bounds the systematic search to schedules with at most this many
   * preemptions (CHESS's search, without partial-order reduction).
   * @default unbounded, partial-order reduced
   */
  readonly maxPreemptions?: number;
  /**
   * Seed of every random choice; the same seed repeats the exploration.
   * @default a random seed, printed with any failure
   */
  readonly seed?: number;
  /**
   * The members the `portfolio` strategy cycles through, one per run.
   * @default DEFAULT_PORTFOLIO (chosen by measurement on the race corpus: docs/explore.md)
   */
  readonly portfolio?: readonly PortfolioMember[];
  /** Runs exactly this schedule (a failure's `replay` string) once, with no shrinking. */
  readonly replay?: string;
  /**
   * Shrink a failing schedule to fewer preemptions before reporting it.
   * @default true
   */
  readonly shrink?: boolean;
  /**
   * Runs the shrinker may spend.
   * @default 200
   */
  readonly shrinkRuns?: number;
  /**
   * How long an intercepted call may take while no other task can run before the run fails.
   * @default 10000
   */
  readonly stepTimeoutMs?: number;
  /**
   * How long live tasks may show no progress with nothing parked before the run is a deadlock.
   * When the process has no I/O left that could wake them (no socket but the
   * standard streams, no timer or request beyond those there before the
   * exploration began), 10 ms at most.
   * @default 200
   */
  readonly deadlockMs?: number;
  /** Stops the exploration (between runs, and a run in progress). */
  readonly signal?: AbortSignal;
}

/** What {@link explore} found. */
export interface ExploreReport {
  /** Runs made before stopping (the failing run included; shrinking excluded). */
  readonly runs: number;
  /** The first failure, shrunk, or undefined when every schedule passed. */
  readonly failure: ExploreFailure | undefined;
  /**
   * True when the systematic search ran every class of interleavings (or,
   * with `maxPreemptions`, every schedule within the bound) and every run
   * followed the schedule it was given.
   */
  readonly exhausted: boolean;
  /**
   * What a passing systematic search proved, in words (`every interleaving
   * up to the order of commuting steps: 24 schedules`), or why it proved
   * nothing; undefined for sampled strategies.
   */
  readonly proof: string | undefined;
  /**
   * Runs of the systematic search that could not follow the schedule they
   * were given: the program, or a server, decided differently with the same
   * choices (a released row lock went to another waiter). Any makes
   * `exhausted` false.
   */
  readonly strayed: number;
  /** The exploration's seed. */
  readonly seed: number;
  /** The most steps a run took. */
  readonly maxSteps: number;
}

const KNOWN = new Set([
  'runs',
  'strategy',
  'depth',
  'maxPreemptions',
  'seed',
  'portfolio',
  'replay',
  'shrink',
  'shrinkRuns',
  'stepTimeoutMs',
  'deadlockMs',
  'signal',
]);

/** One member of a portfolio: a strategy, with PCT's depth in its name (`pct` alone: adaptive). */
export type PortfolioMember =
  'random' | 'switching' | 'pos' | 'systematic' | 'pct' | `pct:${number}`;

const PORTFOLIO_MEMBER = /^(?:random|switching|pos|systematic|pct|pct:[1-9][0-9]?)$/;

/**
 * PCT's depth for its `run`th run (1-based) when none is given: the runs
 * cycle through depths 3..D, where D is 3 for the first 29 runs and grows by
 * one each time the count doubles from 30, up to 10. On the race corpus
 * depth 3 found every shallow bug as fast as depth 2, and cycling through
 * depth 1 as well cost about three times the runs; deeper runs find what
 * depth 3 never does.
 */
export function adaptiveDepth(run: number): number {
  const ceiling = Math.min(10, 3 + Math.max(0, Math.floor(Math.log2(run / 15))));
  return 3 + ((run - 1) % (ceiling - 2));
}

/**
 * The default portfolio, chosen by `npm run bench:explore` on the race corpus
 * (docs/explore.md): runs cycle through these members.
 */
export const DEFAULT_PORTFOLIO: readonly PortfolioMember[] = ['switching', 'systematic', 'random'];

const STRATEGIES: readonly StrategyName[] = [
  'portfolio',
  'random',
  'switching',
  'pct',
  'pos',
  'systematic',
];

interface Settings {
  readonly runs: number;
  readonly strategy: StrategyName;
  readonly depth: number | undefined;
  readonly maxPreemptions: number | undefined;
  readonly seed: number;
  readonly portfolio: readonly PortfolioMember[];
  readonly replay: readonly number[] | undefined;
  readonly shrink: boolean;
  readonly shrinkRuns: number;
  readonly stepTimeoutMs: number;
  readonly deadlockMs: number;
  readonly signal: AbortSignal | undefined;
  /** Taken when the exploration starts (see quiet.ts). */
  readonly io: IoBaseline | undefined;
}

/** Validates {@link ExploreOptions} and fills in the defaults. */
export function exploreSettings(options: ExploreOptions = {}): Settings {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, KNOWN);
  const settings: Settings = {
    runs: options.runs ?? 1000,
    strategy: options.strategy ?? 'portfolio',
    depth: options.depth,
    maxPreemptions: options.maxPreemptions,
    seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
    portfolio: options.portfolio ?? DEFAULT_PORTFOLIO,
    replay: options.replay === undefined ? undefined : decodeSchedule(options.replay),
    shrink: options.shrink ?? true,
    shrinkRuns: options.shrinkRuns ?? 200,
    stepTimeoutMs: options.stepTimeoutMs ?? 10_000,
    deadlockMs: options.deadlockMs ?? 200,
    signal: options.signal,
    io: undefined,
  };
  assertPositiveInteger('options.runs', settings.runs);
  assertOneOf('options.strategy', settings.strategy, STRATEGIES);
  if (settings.depth !== undefined) assertPositiveInteger('options.depth', settings.depth);
  if (settings.maxPreemptions !== undefined)
    assertNonNegativeInteger('options.maxPreemptions', settings.maxPreemptions);
  if (!Number.isSafeInteger(settings.seed) || settings.seed < 0 || settings.seed >= 2 ** 32) {
    throw new InvalidArgumentError('options.seed', 'an integer in [0, 2^32)', options.seed);
  }
  if (typeof settings.shrink !== 'boolean')
    throw new InvalidArgumentError('options.shrink', 'a boolean', options.shrink);
  assertNonNegativeInteger('options.shrinkRuns', settings.shrinkRuns);
  if (
    !Array.isArray(settings.portfolio) ||
    settings.portfolio.length === 0 ||
    !settings.portfolio.every(
      (member) => typeof member === 'string' && PORTFOLIO_MEMBER.test(member),
    )
  ) {
    throw new InvalidArgumentError(
      'options.portfolio',
      'a non-empty array of "random", "switching", "pos", "systematic", "pct" or "pct:<depth>"',
      options.portfolio,
    );
  }
  assertPositiveInteger('options.stepTimeoutMs', settings.stepTimeoutMs);
  assertPositiveInteger('options.deadlockMs', settings.deadlockMs);
  assertAbortSignal('options.signal', settings.signal);
  return settings;
}

interface RunOutcome {
  readonly record: ExecutionRecord;
  readonly error: { readonly error: unknown } | undefined;
}

/** Runs the program once under `strategy`. */
async function runOnce(
  program: ExploreProgram,
  strategy: Strategy,
  settings: Settings,
  run: number,
): Promise<RunOutcome> {
  const execution = new Execution(strategy, settings);
  const context = createContext(execution, run);
  let programError: { error: unknown } | undefined;
  const programDone = (async () => program(context))().then(
    () => undefined,
    (error: unknown) => {
      programError = { error };
    },
  );
  const scheduled = execution.schedule(programDone);
  let abort: (() => void) | undefined;
  const aborted = new Promise<{ error: unknown }>((resolve) => {
    if (settings.signal === undefined) return;
    abort = () => resolve({ error: settings.signal!.reason });
    settings.signal.addEventListener('abort', abort, { once: true });
  });
  try {
    const stop = await Promise.race([
      scheduled.then(
        () => undefined,
        (error: unknown) => ({ error }),
      ),
      aborted,
    ]);
    if (settings.signal?.aborted === true) throw settings.signal.reason;
    const error = stop ?? programError ?? execution.unawaitedError;
    return { record: execution.record(), error };
  } finally {
    if (abort !== undefined) settings.signal?.removeEventListener('abort', abort);
  }
}

/** Index of the last step whose choice differs from what no preemption would have done, plus one. */
function significantLength(record: ExecutionRecord): number {
  for (let index = record.choices.length - 1; index >= 0; index -= 1) {
    const ready = record.readySets[index]!.map((task) => ({
      task,
      label: '',
      resource: undefined,
      footprint: ANYTHING,
    }));
    const natural = defaultChoice({
      step: index,
      ready,
      current: record.currents[index],
      retried: false,
      previousFootprint: ANYTHING,
    });
    if (natural !== record.choices[index]) return index + 1;
  }
  return 0;
}

function divergence(step: number, wanted: number, ready: readonly number[]): never {
  throw new ReplayDivergedError(step, wanted, ready);
}

/**
 * Looks for a failing schedule with fewer preemptions: first variations of
 * the failing one (one preemption dropped, or the rest run without
 * preemption), then the systematic search below the preemption count found,
 * fewest preemptions first, within what is left of `shrinkRuns`.
 */
async function shrink(
  program: ExploreProgram,
  settings: Settings,
  failing: RunOutcome,
): Promise<RunOutcome> {
  let best = failing;
  let budget = settings.shrinkRuns;
  const attempt = async (strategy: Strategy): Promise<RunOutcome | undefined> => {
    throwIfAborted(settings.signal);
    budget -= 1;
    const outcome = await runOnce(program, strategy, settings, 0);
    return outcome.error !== undefined && outcome.record.preemptions < best.record.preemptions
      ? outcome
      : undefined;
  };
  let improved = true;
  while (improved && budget > 0 && best.record.preemptions > 0) {
    improved = false;
    const { choices, trace, currents } = best.record;
    const preemptive = trace.flatMap((step, index) => (step.preemption ? [index] : []));
    const candidates = [
      ...preemptive.map((index) =>
        choices.map((task, at) => (at === index ? currents[index]! : task)),
      ),
      ...preemptive.map((index) => choices.slice(0, index + 1)),
    ];
    for (const candidate of candidates) {
      if (budget <= 0) break;
      const smaller = await attempt(prefixStrategy(candidate, false, divergence));
      if (smaller !== undefined) {
        best = smaller;
        improved = true;
        break;
      }
    }
  }
  if (best.record.preemptions > 0 && budget > 0) {
    const search = new SystematicSearch(best.record.preemptions - 1);
    for (let prefix = search.next(); prefix !== undefined && budget > 0; prefix = search.next()) {
      const strategy = prefixStrategy(prefix, false, divergence, true);
      throwIfAborted(settings.signal);
      budget -= 1;
      const outcome = await runOnce(program, strategy, settings, 0);
      if (outcome.error !== undefined && outcome.record.preemptions < best.record.preemptions) {
        return outcome; // fewest preemptions first: nothing smaller is left to find
      }
      search.expand(outcome.record, prefix.length);
    }
  }
  return best;
}

function failureOf(
  outcome: RunOutcome,
  run: number,
  seed: number,
  strategy: string,
): ExploreFailure {
  const { record } = outcome;
  return new ExploreFailure({
    replay: encodeSchedule(record.choices.slice(0, significantLength(record))),
    trace: record.trace,
    traceText: formatTrace(record.trace, record.unfinished),
    preemptions: record.preemptions,
    run,
    seed,
    strategy,
    cause: outcome.error!.error,
  });
}

/** The strategy of one sampled run. */
function sampledStrategy(
  member: PortfolioMember,
  seed: number,
  maxSteps: number,
  run: number,
): Strategy {
  if (member === 'random') return randomStrategy(seed);
  if (member === 'switching') return switchingStrategy(seed);
  if (member === 'pos') return posStrategy(seed);
  const depth = member === 'pct' ? adaptiveDepth(run) : Number(member.slice(4));
  return pctStrategy(seed, depth, Math.max(maxSteps, 1));
}

/**
 * Runs `program` under many schedules and reports the first that fails,
 * shrunk to its fewest preemptions, with a replay string and a trace.
 * Never throws for a failing schedule: the failure is in the report (use
 * {@link exploreTest} to fail a test).
 *
 * @example
 * ```ts
 * const report = await explore(async (ctx) => {
 *   let stock = 1;
 *   const buy = async () => {
 *     const seen = stock;
 *     await ctx.point('after-read');
 *     if (seen > 0) stock = seen - 1;
 *   };
 *   await Promise.all([ctx.spawn('a', buy), ctx.spawn('b', buy)]);
 *   if (stock < 0) throw new Error('oversold');
 * }, { runs: 100 });
 * ```
 */
export async function explore(
  program: ExploreProgram,
  options: ExploreOptions = {},
): Promise<ExploreReport> {
  assertFunction('program', program);
  const settings: Settings = { ...exploreSettings(options), io: ioBaseline() };
  throwIfAborted(settings.signal);
  if (settings.replay !== undefined) {
    const outcome = await runOnce(
      program,
      prefixStrategy(settings.replay, true, divergence),
      settings,
      1,
    );
    return {
      runs: 1,
      failure:
        outcome.error === undefined ? undefined : failureOf(outcome, 1, settings.seed, 'replay'),
      exhausted: false,
      proof: undefined,
      strayed: 0,
      seed: settings.seed,
      maxSteps: outcome.record.choices.length,
    };
  }
  const systematic: ScheduleSearch =
    settings.maxPreemptions === undefined
      ? new PartialOrderSearch()
      : boundedSearch(settings.maxPreemptions, divergence);
  const proof = (): string | undefined =>
    settings.strategy === 'systematic' ||
    (settings.strategy === 'portfolio' && settings.portfolio.includes('systematic'))
      ? systematic.proof()
      : undefined;
  let maxSteps = 0;
  const passed = (runs: number): ExploreReport => ({
    runs,
    failure: undefined,
    exhausted: systematic.exhausted,
    proof: proof(),
    strayed: systematic.strayed,
    seed: settings.seed,
    maxSteps,
  });
  for (let run = 1; run <= settings.runs; run += 1) {
    throwIfAborted(settings.signal);
    let member: PortfolioMember =
      settings.strategy === 'portfolio'
        ? settings.portfolio[(run - 1) % settings.portfolio.length]!
        : settings.strategy === 'pct' && settings.depth !== undefined
          ? `pct:${settings.depth}`
          : settings.strategy;
    let strategy: Strategy | undefined;
    if (member === 'systematic') {
      strategy = systematic.next();
      if (strategy === undefined) {
        // Every interleaving has run (unbounded search, every run as given):
        // sampling more could only repeat one; a bounded search's end proves less.
        const everything = settings.maxPreemptions === undefined && systematic.exhausted;
        if (settings.strategy === 'systematic' || everything) return passed(run - 1);
        member = 'random'; // every schedule within the bound was tried: sample instead
      }
    }
    const searching = strategy !== undefined;
    // A member's own run count (PCT's depth cycles over its runs, not the portfolio's).
    const ordinal =
      settings.strategy === 'portfolio' ? Math.ceil(run / settings.portfolio.length) : run;
    strategy ??= sampledStrategy(member, runSeed(settings.seed, run), maxSteps, ordinal);
    const outcome = await runOnce(program, strategy, settings, run);
    maxSteps = Math.max(maxSteps, outcome.record.choices.length);
    if (searching) systematic.expand(outcome.record);
    if (outcome.error !== undefined) {
      const shrunk = settings.shrink ? await shrink(program, settings, outcome) : outcome;
      return {
        runs: run,
        failure: failureOf(shrunk, run, settings.seed, strategy.name),
        exhausted: false,
        proof: undefined,
        strayed: systematic.strayed,
        seed: settings.seed,
        maxSteps,
      };
    }
  }
  return passed(settings.runs);
}
