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
  const { concurrency = 100, trials = 5, gapMs = 2, poolSize = 32, signal } = options;
  if (!Number.isSafeInteger(concurrency) || concurrency < 2 || concurrency > 1000) {
    throw new InvalidArgumentError('concurrency', 'an integer from 2 to 1000', concurrency);
  }
  if (!Number.isSafeInteger(trials) || trials < 1)
    throw new InvalidArgumentError('trials', 'a positive integer', trials);
  if (typeof gapMs !== 'number' || !Number.isFinite(gapMs) || gapMs < 0) {
    throw new InvalidArgumentError('gapMs', 'a finite number >= 0', gapMs);
  }
  const known = ALL_SCENARIO_NAMES;
  for (const name of options.scenarios ?? []) {
    if (!known.includes(name))
      throw new InvalidArgumentError('scenario', `one of ${known.join(', ')}`, name);
  }
  const wanted = (name: string): boolean =>
    options.scenarios === undefined || options.scenarios.includes(name);
  const scenarios = SCENARIOS.filter((s) => wanted(s.name));
  const messageScenarios = MESSAGE_SCENARIOS.filter((s) => wanted(s.name));
  const cacheScenarios = CACHE_SCENARIOS.filter((s) => wanted(s.name));
  const replicaScenarios = REPLICA_SCENARIOS.filter((s) => wanted(s.name));
  const clockScenarios = CLOCK_SCENARIOS.filter((s) => wanted(s.name));
  const strategies = options.strategies ?? STRATEGIES;
  for (const strategy of strategies) {
    if (!ALL_STRATEGIES.includes(strategy))
      throw new InvalidArgumentError('strategy', `one of ${ALL_STRATEGIES.join(', ')}`, strategy);
  }
  const servers = options.servers ?? 1;
  if (!Number.isSafeInteger(servers) || servers < 1 || servers > 8) {
    throw new InvalidArgumentError('servers', 'an integer from 1 to 8', servers);
  }
  const unsafeStrategies: Strategy[] =
    servers > 1 ? [...KNOWN_UNSAFE, 'local-mutex'] : [...KNOWN_UNSAFE];
  // Trials done and planned, across both shapes of scenario.
  let done = 0;
  let progressTotal = 0;

  const database = await openLabDatabase({
    databaseUrl: options.databaseUrl,
    ...(signal && { signal }),
  });
  // Torn down in reverse order of creation, whatever happens; the database last.
  const cleanup: (() => Promise<unknown>)[] = [() => database.close()];
  try {
    // One pool, one set of lockers and one HTTP server per lab server, as separate processes would have.
    const pools = Array.from({ length: servers }, () => database.newPool(poolSize));
    const lockers = await setUpLockers(strategies, pools, cleanup, () =>
      database.newPool(Math.ceil(concurrency / servers) + 1),
    );
    const clients: BurstClient[] = [];
    for (const [i, pool] of pools.entries()) {
      const set = lockers[i];
      const app = createLabServer({
        pool,
        scenarios,
        gapMs,
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
    const results = await runAll(pools[0] as LabPool, clients);
    const skipped: { scenario: string; reason: string }[] = [];
    const first = pools[0] as LabPool;
    // The shapes below run on PostgreSQL: on MySQL they are reported as skipped, with the reason.
    const pool = (first.dialect === 'postgres' ? first.driver : undefined) as PoolLike;
    const onPostgres = <R>(
      reason: string,
      open: () => Promise<R | { readonly unavailable: string }>,
    ): (() => Promise<R | { readonly unavailable: string }>) =>
      first.dialect === 'postgres'
        ? open
        : () => Promise.resolve({ unavailable: `runs on PostgreSQL only: ${reason}` });
    /** One shape of scenario: open what it runs on (or say why not), then its trials. */
    const runShape = async <
      S extends { readonly name: string; readonly strategies: readonly Strategy[] },
      R,
    >(
      list: readonly S[],
      open: () => Promise<R | { readonly unavailable: string }>,
      prepare: (scenario: S, resource: R) => Promise<void>,
      trial: (scenario: S, strategy: Strategy, resource: R) => Promise<ShapedTrial>,
    ): Promise<void> => {
      const plan = planOf(list);
      if (plan.length === 0) return;
      const resource = await open();
      if (typeof resource === 'object' && resource !== null && 'unavailable' in resource) {
        for (const [scenario] of plan)
          skipped.push({ scenario: scenario.name, reason: resource.unavailable });
        return;
      }
      results.push(
        ...(await runShaped(
          plan,
          (scenario) => prepare(scenario, resource as R),
          (scenario, strategy) => trial(scenario, strategy, resource as R),
        )),
      );
    };
    await runShape(
      messageScenarios,
      onPostgres("its inbox is raceguard/postgres's PostgresInbox", () => openLabBroker(cleanup)),
      (scenario) => scenario.createSchema(pool),
      async (scenario, strategy, broker) => {
        const trial = await scenario.runTrial({
          pool,
          broker,
          strategy,
          keys: concurrency,
          workers: 8,
          signal,
        });
        return {
          ...trial,
          accepted: trial.applied,
          rejected: trial.duplicates,
          operations: trial.deliveries,
        };
      },
    );
    await runShape(
      cacheScenarios,
      () => openLabRedis(cleanup),
      (scenario) => scenario.createSchema(first),
      async (scenario, strategy, redis) => {
        const trial = await scenario.runTrial({
          pool: first,
          redis,
          strategy,
          keys: concurrency,
          signal,
        });
        return {
          ...trial,
          accepted: trial.reads,
          rejected: trial.refusedFills,
          retries: 0,
          operations: trial.reads + trial.writes,
        };
      },
    );
    await runShape(
      clockScenarios,
      () => Promise.resolve(first),
      (scenario) => scenario.createSchema(first),
      async (scenario, strategy) => {
        const trial = await scenario.runTrial({
          pool: first,
          strategy: strategy as 'unsafe' | ClockStrategy,
          keys: concurrency,
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
    );
    await runShape(
      replicaScenarios,
      onPostgres('its replicas are PostgreSQL hot standbys, routed by WAL position', () =>
        openLabReplicas(cleanup),
      ),
      (scenario, replicas) => scenario.createSchema(replicas),
      async (scenario, strategy, replicas) => {
        const trial = await scenario.runTrial({
          replicas,
          strategy: strategy as 'unsafe' | ReplicaStrategy,
          keys: concurrency,
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
    );
    return {
      results,
      concurrency,
      trials,
      gapMs,
      database: database.dialect,
      embeddedPostgres: database.embedded,
      servers,
      unsafeStrategies,
      fixesClean: results.every(
        (r) => unsafeStrategies.includes(r.strategy) || r.anomalousTrials === 0,
      ),
      skipped,
    };
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
  }

  /** The scenarios of one shape with the strategies that apply to each; those with none left out. */
  function planOf<S extends { readonly name: string; readonly strategies: readonly Strategy[] }>(
    list: readonly S[],
  ): (readonly [S, readonly Strategy[]])[] {
    return list
      .map((scenario) => [scenario, strategies.filter((s) => appliesTo(scenario, s))] as const)
      .filter(([, applicable]) => applicable.length > 0);
  }

  /**
   * The scenarios that are not HTTP bursts (messages, caches): recreate the
   * schema, run each trial, aggregate what it counted.
   */
  async function runShaped<S extends { readonly name: string }>(
    plan: readonly (readonly [S, readonly Strategy[]])[],
    prepare: (scenario: S) => Promise<void>,
    runTrial: (scenario: S, strategy: Strategy) => Promise<ShapedTrial>,
  ): Promise<LabResult[]> {
    const results: LabResult[] = [];
    for (const [scenario, applicable] of plan) {
      for (const strategy of applicable) {
        await prepare(scenario);
        const anomalies: Record<string, number> = {};
        let anomalousTrials = 0;
        const latencies: number[] = [];
        const counts = { accepted: 0, rejected: 0, conflicts: 0, errors: 0, retries: 0 };
        let busyMs = 0;
        let operations = 0;
        for (let trial = 0; trial < trials; trial++) {
          throwIfAborted(signal);
          const outcome = await runTrial(scenario, strategy);
          busyMs += outcome.durationMs;
          operations += outcome.operations;
          latencies.push(...outcome.latenciesMs);
          counts.accepted += outcome.accepted;
          counts.rejected += outcome.rejected;
          counts.retries += outcome.retries;
          if (Object.keys(outcome.anomalies).length > 0) anomalousTrials++;
          for (const [kind, count] of Object.entries(outcome.anomalies))
            anomalies[kind] = (anomalies[kind] ?? 0) + count;
          done++;
          options.onProgress?.({ done, total: progressTotal, scenario: scenario.name, strategy });
        }
        results.push({
          scenario: scenario.name,
          strategy,
          trials,
          anomalousTrials,
          anomalies,
          ...counts,
          throughputPerSec: busyMs > 0 ? (operations * 1000) / busyMs : 0,
          p50Ms: percentile(latencies, 50),
          p99Ms: percentile(latencies, 99),
        });
      }
    }
    return results;
  }

  /** Spread one burst over every server (round robin), released together. */
  async function fireAll(clients: readonly BurstClient[], requests: readonly BurstRequest[]) {
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

  async function runAll(pool: LabPool, clients: readonly BurstClient[]): Promise<LabResult[]> {
    const results: LabResult[] = [];
    const plan = scenarios.map(
      (scenario) => [scenario, strategies.filter((s) => appliesTo(scenario, s))] as const,
    );
    const total =
      [
        ...plan,
        ...planOf(messageScenarios),
        ...planOf(cacheScenarios),
        ...planOf(replicaScenarios),
        ...planOf(clockScenarios),
      ].reduce((sum, [, applicable]) => sum + applicable.length, 0) * trials;
    progressTotal = total;
    const [firstScenario, firstStrategies] =
      plan.find(([, applicable]) => applicable.length > 0) ?? [];
    const firstStrategy = firstStrategies?.[0];
    if (options.warmup !== false && firstScenario !== undefined && firstStrategy !== undefined) {
      await firstScenario.createSchema(pool, firstStrategy);
      await firstScenario.seed(pool, { concurrency });
      await fireAll(
        clients,
        firstScenario
          .requests({ concurrency })
          .map((body) => ({ path: `/scenarios/${firstScenario.name}/${firstStrategy}`, body })),
      );
    }
    options.onStart?.({
      embedded: database.embedded,
      database: database.dialect,
      schema: database.schema,
      bursts: total,
    });
    for (const [scenario, applicable] of plan) {
      for (const strategy of applicable) {
        await scenario.createSchema(pool, strategy);
        const anomalies: Record<string, number> = {};
        let anomalousTrials = 0;
        const latencies: number[] = [];
        const counts = { accepted: 0, rejected: 0, conflicts: 0, errors: 0, retries: 0 };
        let busyMs = 0;
        for (let trial = 0; trial < trials; trial++) {
          throwIfAborted(signal);
          const shape = { concurrency };
          await scenario.seed(pool, shape);
          const requests = scenario.requests(shape);
          const burst = await fireAll(
            clients,
            requests.map((body) => ({ path: `/scenarios/${scenario.name}/${strategy}`, body })),
          );
          busyMs += burst.durationMs;
          if (options.historyDir !== undefined) {
            await writeLabHistory(
              options.historyDir,
              `${scenario.name}-${strategy}-trial-${trial + 1}`,
              requests,
              burst.responses,
            );
          }
          const observed: ObservedResponse[] = burst.responses.map((r) => ({
            status: r.status,
            body: r.body,
            request: requests[r.index] ?? {},
          }));
          for (const r of burst.responses) {
            latencies.push(r.latencyMs);
            const retries = (r.body as { retries?: unknown } | undefined)?.retries;
            if (typeof retries === 'number') counts.retries += retries;
            if (r.status >= 200 && r.status < 300) counts.accepted++;
            else if (r.status === 409 || r.status === 412) counts.conflicts++;
            else if (r.status >= 400 && r.status < 500) counts.rejected++;
            else counts.errors++;
          }
          const found = await scenario.check(pool, observed, shape);
          const serverErrors = burst.responses.filter(
            (r) => r.status === 0 || r.status >= 500,
          ).length;
          if (serverErrors > 0) found['server-error'] = (found['server-error'] ?? 0) + serverErrors;
          if (Object.keys(found).length > 0) anomalousTrials++;
          for (const [kind, count] of Object.entries(found))
            anomalies[kind] = (anomalies[kind] ?? 0) + count;
          done++;
          options.onProgress?.({ done, total, scenario: scenario.name, strategy });
        }
        results.push({
          scenario: scenario.name,
          strategy,
          trials,
          anomalousTrials,
          anomalies,
          ...counts,
          throughputPerSec: busyMs > 0 ? (trials * concurrency * 1000) / busyMs : 0,
          p50Ms: percentile(latencies, 50),
          p99Ms: percentile(latencies, 99),
        });
      }
    }
    return results;
  }
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
