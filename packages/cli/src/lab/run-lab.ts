/**
 * The lab runner: start PostgreSQL (or connect to MySQL / MariaDB) and the
 * lab service, fire synchronized bursts at every scenario and strategy,
 * check the invariants, aggregate.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createBurstClient, type BurstClient, type BurstRequest } from './burst-client.js';
import { percentile } from '../index.js';
import { InvalidArgumentError, throwIfAborted } from 'raceguard';
import type { PoolLike } from 'raceguard/postgres';
import type { LabDialect, LabPool } from './sql.js';
import { openLabDatabase } from './lab-database.js';
import { createLabServer } from './server.js';
import {
  ALL_SCENARIO_NAMES,
  CACHE_SCENARIOS,
  CLOCK_SCENARIOS,
  MESSAGE_SCENARIOS,
  REPLICA_SCENARIOS,
  SCENARIOS,
} from './scenarios/index.js';
import { openLabReplicas } from './lab-replicas.js';
import type { LabBroker } from './message-scenario.js';
import type { LabReplicas } from './replica-scenario.js';
import { openLabBroker } from './broker.js';
import { openLabRedis } from './lab-redis.js';
import type { Anomalies } from './scenario.js';
import {
  ALL_STRATEGIES,
  appliesTo,
  KNOWN_UNSAFE,
  STRATEGIES,
  type ObservedResponse,
  type ClockStrategy,
  type ReplicaStrategy,
  type Strategy,
} from './scenario.js';
import { setUpLockers } from './lock-backends.js';

/** What a trial of a scenario that is not an HTTP burst counted, in the report's terms. */
interface ShapedTrial {
  readonly anomalies: Anomalies;
  readonly accepted: number;
  readonly rejected: number;
  readonly retries: number;
  /** Messages delivered, or reads and writes: the throughput's numerator. */
  readonly operations: number;
  readonly latenciesMs: readonly number[];
  readonly durationMs: number;
}

/** Options of {@link runLab}. */
export interface LabOptions {
  /** Requests per burst. @default 100 */
  readonly concurrency?: number;
  /** Bursts per scenario and strategy. @default 5 */
  readonly trials?: number;
  /** The awaited pause between read and write in ms; 0 = no artificial delay. @default 2 */
  readonly gapMs?: number;
  /** Scenario names to run. @default all */
  readonly scenarios?: readonly string[];
  /** Strategies to run. @default all */
  readonly strategies?: readonly Strategy[];
  /**
   * The database: a postgres:// URL, or a mysql:// (or mariadb://) URL to
   * run the relational scenarios on MySQL / MariaDB (the lab creates a
   * database of its own there and drops it at the end).
   * @default process.env.DATABASE_URL, else an embedded PostgreSQL
   */
  readonly databaseUrl?: string;
  /** Connections of the service's pool. @default 32 */
  readonly poolSize?: number;
  /**
   * Lab servers behind the same database; requests are spread over them. With
   * two or more, an in-process mutex no longer protects anything.
   * @default 1
   */
  readonly servers?: number;
  /**
   * Write every HTTP burst as a history file into this directory
   * (`<scenario>-<strategy>-trial-<n>.json`: each request's body as the
   * input, its status and body as the output, invoked at the release and
   * returned with its response; a transport failure is an unknown outcome),
   * in the shape `raceguard check` reads.
   */
  readonly historyDir?: string;
  /**
   * Fire one unscored burst (the first scenario and strategy, seeded, not
   * checked) before the first scored one, so no trial pays for cold
   * connections and code.
   * @default true
   */
  readonly warmup?: boolean;
  /** Called once the database and the lab servers are up, before the first burst. */
  readonly onStart?: (start: LabStart) => void;
  /** Called after every trial. */
  readonly onProgress?: (progress: LabProgress) => void;
  readonly signal?: AbortSignal;
}

/** What {@link LabOptions.onStart} is told. */
export interface LabStart {
  /** `true` when an embedded PostgreSQL was started. */
  readonly embedded: boolean;
  /** The database's dialect. */
  readonly database: LabDialect;
  /** The lab's schema on the server. */
  readonly schema: string;
  /** Bursts the run will release (scenario × strategy × trial). */
  readonly bursts: number;
}

/** Progress of a lab run. */
export interface LabProgress {
  readonly done: number;
  readonly total: number;
  readonly scenario: string;
  readonly strategy: Strategy;
}

/** The aggregate of one scenario under one strategy. */
export interface LabResult {
  readonly scenario: string;
  readonly strategy: Strategy;
  readonly trials: number;
  readonly anomalousTrials: number;
  readonly anomalies: Record<string, number>;
  readonly accepted: number;
  readonly rejected: number;
  readonly conflicts: number;
  readonly errors: number;
  readonly retries: number;
  readonly throughputPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** A whole lab run. */
export interface LabReport {
  readonly results: LabResult[];
  readonly concurrency: number;
  readonly trials: number;
  readonly gapMs: number;
  /** The database the scenarios ran on. */
  readonly database: LabDialect;
  readonly embeddedPostgres: boolean;
  /** Lab servers the bursts were spread over. */
  readonly servers: number;
  /**
   * The strategies expected to show anomalies in this set-up: `unsafe`, the
   * folklore cache fixes (`delete-before-write`, `double-delete`), and
   * `local-mutex` across servers.
   */
  readonly unsafeStrategies: readonly Strategy[];
  /** `true` when every fix showed zero anomalies in every trial. */
  readonly fixesClean: boolean;
  /**
   * Scenarios that could not run, and why (the message scenarios without
   * NATS, the cache ones without Redis, the PostgreSQL-only ones on MySQL).
   */
  readonly skipped: readonly { readonly scenario: string; readonly reason: string }[];
}

/**
 * Run the race lab.
 *
 * @example
 * ```ts
 * const report = await runLab({ concurrency: 50, trials: 3, scenarios: ['inventory'] });
 * console.log(report.fixesClean);
 * ```
 */
export async function runLab(options: LabOptions = {}): Promise<LabReport> {
  const plan = planLab(options);
  const database = await openLabDatabase({
    databaseUrl: options.databaseUrl,
    ...(options.signal && { signal: options.signal }),
  });
  // Torn down in reverse order of creation, whatever happens; the database last.
  const cleanup: Cleanup = [() => database.close()];
  try {
    const { pools, clients } = await startLabServers(plan, database, cleanup);
    const first = pools[0] as LabPool;
    const run: LabRun = { plan, options, progress: { done: 0, total: totalBursts(plan) } };
    if (options.warmup !== false) await warmUp(run, first, clients);
    options.onStart?.({
      embedded: database.embedded,
      database: database.dialect,
      schema: database.schema,
      bursts: run.progress.total,
    });
    const results: LabResult[] = [];
    for (const [scenario, applicable] of plan.bursts)
      for (const strategy of applicable)
        results.push(await runBurstStrategy(run, first, clients, scenario, strategy));
    const skipped: LabSkip[] = [];
    for (const shape of shapesOf(run, first, cleanup)) {
      const outcome = await runShape(run, shape);
      if ('skipped' in outcome) skipped.push(...outcome.skipped);
      else results.push(...outcome.results);
    }
    const { unsafeStrategies } = plan;
    return {
      results,
      concurrency: plan.concurrency,
      trials: plan.trials,
      gapMs: plan.gapMs,
      database: database.dialect,
      embeddedPostgres: database.embedded,
      servers: plan.servers,
      unsafeStrategies,
      fixesClean: results.every(
        (r) => unsafeStrategies.includes(r.strategy) || r.anomalousTrials === 0,
      ),
      skipped,
    };
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
  }
}

/** Tear-down steps, run in reverse order. */
type Cleanup = (() => Promise<unknown>)[];

/** A scenario that could not run, and why. */
type LabSkip = { readonly scenario: string; readonly reason: string };

/** A scenario with the strategies to run it under. */
type Planned<S> = readonly [S, readonly Strategy[]];

type BurstScenario = (typeof SCENARIOS)[number];

/** The options of a run, checked, with the scenarios and strategies each will run. */
interface LabPlan {
  readonly concurrency: number;
  readonly trials: number;
  readonly gapMs: number;
  readonly poolSize: number;
  readonly servers: number;
  readonly strategies: readonly Strategy[];
  readonly unsafeStrategies: readonly Strategy[];
  /** The HTTP-burst scenarios, each with its strategies (possibly none). */
  readonly bursts: readonly Planned<BurstScenario>[];
  readonly messages: readonly Planned<(typeof MESSAGE_SCENARIOS)[number]>[];
  readonly caches: readonly Planned<(typeof CACHE_SCENARIOS)[number]>[];
  readonly clocks: readonly Planned<(typeof CLOCK_SCENARIOS)[number]>[];
  readonly replicas: readonly Planned<(typeof REPLICA_SCENARIOS)[number]>[];
}

/** What every step of a run shares. */
interface LabRun {
  readonly plan: LabPlan;
  readonly options: LabOptions;
  /** Trials done, of all planned. */
  readonly progress: { done: number; readonly total: number };
}

/** Check the options (before anything starts) and plan the run. */
function planLab(options: LabOptions): LabPlan {
  const { concurrency = 100, trials = 5, gapMs = 2, poolSize = 32, servers = 1 } = options;
  if (!Number.isSafeInteger(concurrency) || concurrency < 2 || concurrency > 1000) {
    throw new InvalidArgumentError('concurrency', 'an integer from 2 to 1000', concurrency);
  }
  if (!Number.isSafeInteger(trials) || trials < 1)
    throw new InvalidArgumentError('trials', 'a positive integer', trials);
  if (typeof gapMs !== 'number' || !Number.isFinite(gapMs) || gapMs < 0) {
    throw new InvalidArgumentError('gapMs', 'a finite number >= 0', gapMs);
  }
  for (const name of options.scenarios ?? []) {
    if (!ALL_SCENARIO_NAMES.includes(name))
      throw new InvalidArgumentError('scenario', `one of ${ALL_SCENARIO_NAMES.join(', ')}`, name);
  }
  const strategies = options.strategies ?? STRATEGIES;
  for (const strategy of strategies) {
    if (!ALL_STRATEGIES.includes(strategy))
      throw new InvalidArgumentError('strategy', `one of ${ALL_STRATEGIES.join(', ')}`, strategy);
  }
  if (!Number.isSafeInteger(servers) || servers < 1 || servers > 8) {
    throw new InvalidArgumentError('servers', 'an integer from 1 to 8', servers);
  }
  const wanted = (scenario: { readonly name: string }): boolean =>
    options.scenarios === undefined || options.scenarios.includes(scenario.name);
  /** The wanted scenarios of one shape with the strategies that apply to each; those with none left out. */
  const planOf = <S extends { readonly name: string; readonly strategies: readonly Strategy[] }>(
    list: readonly S[],
  ): Planned<S>[] =>
    list
      .filter(wanted)
      .map((scenario) => [scenario, strategies.filter((s) => appliesTo(scenario, s))] as const)
      .filter(([, applicable]) => applicable.length > 0);
  return {
    concurrency,
    trials,
    gapMs,
    poolSize,
    servers,
    strategies,
    unsafeStrategies: servers > 1 ? [...KNOWN_UNSAFE, 'local-mutex'] : [...KNOWN_UNSAFE],
    bursts: SCENARIOS.filter(wanted).map(
      (scenario) => [scenario, strategies.filter((s) => appliesTo(scenario, s))] as const,
    ),
    messages: planOf(MESSAGE_SCENARIOS),
    caches: planOf(CACHE_SCENARIOS),
    clocks: planOf(CLOCK_SCENARIOS),
    replicas: planOf(REPLICA_SCENARIOS),
  };
}

/** Bursts the run will release: scenario × strategy × trial, over every shape. */
function totalBursts(plan: LabPlan): number {
  const planned: readonly Planned<unknown>[] = [
    ...plan.bursts,
    ...plan.messages,
    ...plan.caches,
    ...plan.replicas,
    ...plan.clocks,
  ];
  return planned.reduce((sum, [, applicable]) => sum + applicable.length, 0) * plan.trials;
}

/** One pool, one set of lockers and one HTTP server per lab server, as separate processes would have. */
async function startLabServers(
  plan: LabPlan,
  database: Awaited<ReturnType<typeof openLabDatabase>>,
  cleanup: Cleanup,
): Promise<{ readonly pools: LabPool[]; readonly clients: BurstClient[] }> {
  const { servers, concurrency } = plan;
  const pools = Array.from({ length: servers }, () => database.newPool(plan.poolSize));
  const lockers = await setUpLockers(plan.strategies, pools, cleanup, () =>
    database.newPool(Math.ceil(concurrency / servers) + 1),
  );
  const clients: BurstClient[] = [];
  for (const [i, pool] of pools.entries()) {
    const set = lockers[i];
    const app = createLabServer({
      pool,
      scenarios: plan.bursts.map(([scenario]) => scenario),
      gapMs: plan.gapMs,
      lockers: set?.lockers ?? {},
      ...(set?.advisoryLock !== undefined && { advisoryLock: set.advisoryLock }),
    });
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    cleanup.push(() => app.close());
    const client = await createBurstClient(address, {
      connections: Math.ceil(concurrency / servers),
      warmupPath: '/health',
    });
    cleanup.push(() => client.close());
    clients.push(client);
  }
  return { pools, clients };
}

/**
 * One unscored burst (the first scenario and strategy, seeded, not
 * checked) before the first scored one, so no trial pays for cold
 * connections and code.
 */
async function warmUp(run: LabRun, pool: LabPool, clients: readonly BurstClient[]): Promise<void> {
  const { concurrency } = run.plan;
  const [scenario, applicable] =
    run.plan.bursts.find(([, strategies]) => strategies.length > 0) ?? [];
  const strategy = applicable?.[0];
  if (scenario === undefined || strategy === undefined) return;
  await scenario.createSchema(pool, strategy);
  await scenario.seed(pool, { concurrency });
  await fireAll(
    clients,
    scenario
      .requests({ concurrency })
      .map((body) => ({ path: `/scenarios/${scenario.name}/${strategy}`, body })),
    run.options.signal,
  );
}

/** The counts of one scenario under one strategy, added up over its trials. */
class Tally {
  readonly anomalies: Record<string, number> = {};
  anomalousTrials = 0;
  readonly latencies: number[] = [];
  readonly counts = { accepted: 0, rejected: 0, conflicts: 0, errors: 0, retries: 0 };
  busyMs = 0;

  /** Count one trial's anomalies. */
  addAnomalies(found: Anomalies): void {
    if (Object.keys(found).length > 0) this.anomalousTrials++;
    for (const [kind, count] of Object.entries(found))
      this.anomalies[kind] = (this.anomalies[kind] ?? 0) + count;
  }

  /** The aggregate, with throughput as `operations` over the time the trials took. */
  result(scenario: string, strategy: Strategy, trials: number, operations: number): LabResult {
    return {
      scenario,
      strategy,
      trials,
      anomalousTrials: this.anomalousTrials,
      anomalies: this.anomalies,
      ...this.counts,
      throughputPerSec: this.busyMs > 0 ? (operations * 1000) / this.busyMs : 0,
      p50Ms: percentile(this.latencies, 50),
      p99Ms: percentile(this.latencies, 99),
    };
  }
}

/** Report one trial done. */
function trialDone(run: LabRun, scenario: string, strategy: Strategy): void {
  run.progress.done++;
  run.options.onProgress?.({
    done: run.progress.done,
    total: run.progress.total,
    scenario,
    strategy,
  });
}

/** An HTTP-burst scenario under one strategy: every trial seeded, fired, counted and checked. */
async function runBurstStrategy(
  run: LabRun,
  pool: LabPool,
  clients: readonly BurstClient[],
  scenario: BurstScenario,
  strategy: Strategy,
): Promise<LabResult> {
  const { concurrency, trials } = run.plan;
  const { signal, historyDir } = run.options;
  await scenario.createSchema(pool, strategy);
  const tally = new Tally();
  for (let trial = 0; trial < trials; trial++) {
    throwIfAborted(signal);
    const shape = { concurrency };
    await scenario.seed(pool, shape);
    const requests = scenario.requests(shape);
    const burst = await fireAll(
      clients,
      requests.map((body) => ({ path: `/scenarios/${scenario.name}/${strategy}`, body })),
      signal,
    );
    tally.busyMs += burst.durationMs;
    if (historyDir !== undefined) {
      await writeLabHistory(
        historyDir,
        `${scenario.name}-${strategy}-trial-${trial + 1}`,
        requests,
        burst.responses,
      );
    }
    countResponses(tally, burst.responses);
    const observed: ObservedResponse[] = burst.responses.map((r) => ({
      status: r.status,
      body: r.body,
      request: requests[r.index] ?? {},
    }));
    const found = await scenario.check(pool, observed, shape);
    const serverErrors = burst.responses.filter((r) => r.status === 0 || r.status >= 500).length;
    if (serverErrors > 0) found['server-error'] = (found['server-error'] ?? 0) + serverErrors;
    tally.addAnomalies(found);
    trialDone(run, scenario.name, strategy);
  }
  return tally.result(scenario.name, strategy, trials, trials * concurrency);
}

/** Count a burst's responses by status class, and the retries their bodies report. */
function countResponses(
  tally: Tally,
  responses: readonly {
    readonly status: number;
    readonly body: unknown;
    readonly latencyMs: number;
  }[],
): void {
  const { counts } = tally;
  for (const r of responses) {
    tally.latencies.push(r.latencyMs);
    const retries = (r.body as { retries?: unknown } | undefined)?.retries;
    if (typeof retries === 'number') counts.retries += retries;
    if (r.status >= 200 && r.status < 300) counts.accepted++;
    else if (r.status === 409 || r.status === 412) counts.conflicts++;
    else if (r.status >= 400 && r.status < 500) counts.rejected++;
    else counts.errors++;
  }
}

/** Spread one burst over every server (round robin), released together. */
async function fireAll(
  clients: readonly BurstClient[],
  requests: readonly BurstRequest[],
  signal: AbortSignal | undefined,
) {
  const parts = clients.map((_, c) =>
    requests.map((r, i) => [r, i] as const).filter(([, i]) => i % clients.length === c),
  );
  const bursts = await Promise.all(
    clients.map((client, c) =>
      client.fire(
        (parts[c] ?? []).map(([r]) => r),
        signal ? { signal } : {},
      ),
    ),
  );
  const responses = bursts.flatMap((burst, c) =>
    burst.responses.map((r) => ({ ...r, index: (parts[c] ?? [])[r.index]?.[1] ?? -1 })),
  );
  return { responses, durationMs: Math.max(...bursts.map((b) => b.durationMs)) };
}

/**
 * A shape of scenario that is not an HTTP burst (messages, caches, clocks,
 * replicas): what it runs on, how its schema is made, and one trial.
 */
interface Shape<S extends { readonly name: string }, R> {
  readonly planned: readonly Planned<S>[];
  /** Open what the scenarios run on, or say why they cannot run here. */
  open(): Promise<R | { readonly unavailable: string }>;
  prepare(scenario: S, resource: R): Promise<void>;
  trial(scenario: S, strategy: Strategy, resource: R): Promise<ShapedTrial>;
}

/** A {@link Shape} whose scenario and resource types are no longer needed. */
type AnyShape = Shape<{ readonly name: string }, never>;

/** Declare a shape (keeping its types checked where it is written). */
function shape<S extends { readonly name: string }, R>(declared: Shape<S, R>): AnyShape {
  return declared as unknown as AnyShape;
}

/** The shapes after the HTTP bursts, in the order they run. */
function shapesOf(run: LabRun, first: LabPool, cleanup: Cleanup): AnyShape[] {
  const { plan } = run;
  const { signal } = run.options;
  const keys = plan.concurrency;
  // These shapes run on PostgreSQL: on MySQL they are reported as skipped, with the reason.
  const pool = (first.dialect === 'postgres' ? first.driver : undefined) as PoolLike;
  const onPostgres =
    <R>(reason: string, open: () => Promise<R | { readonly unavailable: string }>) =>
    (): Promise<R | { readonly unavailable: string }> =>
      first.dialect === 'postgres'
        ? open()
        : Promise.resolve({ unavailable: `runs on PostgreSQL only: ${reason}` });
  return [
    shape({
      planned: plan.messages,
      open: onPostgres<LabBroker>("its inbox is raceguard/postgres's PostgresInbox", () =>
        openLabBroker(cleanup),
      ),
      prepare: (scenario) => scenario.createSchema(pool),
      trial: async (scenario, strategy, broker) => {
        const trial = await scenario.runTrial({ pool, broker, strategy, keys, workers: 8, signal });
        return {
          ...trial,
          accepted: trial.applied,
          rejected: trial.duplicates,
          operations: trial.deliveries,
        };
      },
    }),
    shape({
      planned: plan.caches,
      open: () => openLabRedis(cleanup),
      prepare: (scenario) => scenario.createSchema(first),
      trial: async (scenario, strategy, redis) => {
        const trial = await scenario.runTrial({ pool: first, redis, strategy, keys, signal });
        return {
          ...trial,
          accepted: trial.reads,
          rejected: trial.refusedFills,
          retries: 0,
          operations: trial.reads + trial.writes,
        };
      },
    }),
    shape({
      planned: plan.clocks,
      open: () => Promise.resolve(first),
      prepare: (scenario) => scenario.createSchema(first),
      trial: async (scenario, strategy) => {
        const trial = await scenario.runTrial({
          pool: first,
          strategy: strategy as 'unsafe' | ClockStrategy,
          keys,
          signal,
        });
        return {
          ...trial,
          accepted: trial.applied,
          rejected: trial.refused,
          retries: 0,
          operations: trial.applied + trial.refused,
        };
      },
    }),
    shape({
      planned: plan.replicas,
      open: onPostgres<LabReplicas>(
        'its replicas are PostgreSQL hot standbys, routed by WAL position',
        () => openLabReplicas(cleanup),
      ),
      prepare: (scenario, replicas) => scenario.createSchema(replicas),
      trial: async (scenario, strategy, replicas) => {
        const trial = await scenario.runTrial({
          replicas,
          strategy: strategy as 'unsafe' | ReplicaStrategy,
          keys,
          signal,
        });
        return {
          ...trial,
          accepted: trial.reads,
          rejected: trial.replicaReads,
          retries: 0,
          operations: trial.reads + trial.writes,
        };
      },
    }),
  ];
}

/**
 * Run one shape: open what it runs on (or say why not), then for each
 * scenario and strategy recreate the schema, run the trials and aggregate
 * what they counted.
 */
async function runShape(
  run: LabRun,
  shape: AnyShape,
): Promise<{ readonly results: LabResult[] } | { readonly skipped: LabSkip[] }> {
  if (shape.planned.length === 0) return { results: [] };
  const resource = await shape.open();
  if (typeof resource === 'object' && resource !== null && 'unavailable' in resource) {
    return {
      skipped: shape.planned.map(([scenario]) => ({
        scenario: scenario.name,
        reason: resource.unavailable,
      })),
    };
  }
  const { trials } = run.plan;
  const results: LabResult[] = [];
  for (const [scenario, applicable] of shape.planned) {
    for (const strategy of applicable) {
      await shape.prepare(scenario, resource);
      const tally = new Tally();
      let operations = 0;
      for (let trial = 0; trial < trials; trial++) {
        throwIfAborted(run.options.signal);
        const outcome = await shape.trial(scenario, strategy, resource);
        tally.busyMs += outcome.durationMs;
        operations += outcome.operations;
        tally.latencies.push(...outcome.latenciesMs);
        tally.counts.accepted += outcome.accepted;
        tally.counts.rejected += outcome.rejected;
        tally.counts.retries += outcome.retries;
        tally.addAnomalies(outcome.anomalies);
        trialDone(run, scenario.name, strategy);
      }
      results.push(tally.result(scenario.name, strategy, trials, operations));
    }
  }
  return { results };
}

/** One burst as a history file (operations: client = request index, times in ms from the release). */
async function writeLabHistory(
  dir: string,
  name: string,
  requests: readonly unknown[],
  responses: readonly {
    readonly index: number;
    readonly status: number;
    readonly body: unknown;
    readonly latencyMs: number;
  }[],
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const operations = responses
    .slice()
    .sort((a, b) => a.index - b.index)
    .map((r) => ({
      client: r.index,
      input: requests[r.index] ?? null,
      ...(r.status !== 0 && { output: { status: r.status, body: r.body } }),
      call: 0,
      return: r.status === 0 ? null : r.latencyMs,
    }));
  await writeFile(join(dir, `${name}.json`), `${JSON.stringify({ operations }, null, 2)}\n`);
}
