/**
 * Run a scenario: for every trial, set up, release the burst by last-byte
 * synchronisation, and evaluate the invariants; aggregate spreads,
 * latencies and violations.
 */
import { Pool, request as undiciRequest } from 'undici';
import {
  isAborted,
  messageOf,
  assertAbortSignal,
  assertNonNegativeFinite,
  assertOneOf,
  assertPlainObject,
  assertPositiveInteger,
} from '../arguments.js';
import { AbortedError, InvalidArgumentError, RaceguardError } from 'raceguard';
import { DELAY_HEADER, DELAY_REACHED_HEADER, formatDelays } from 'raceguard/delay';
import { checkLinearizable, modelByName, type Operation } from 'raceguard/check';
import { delayMatcher, type DbDelay } from '../proxy/db-delays.js';
import { ProxyClient } from '../proxy/proxy-client.js';
import { percentile } from './percentile.js';
import { Http1BurstClient, type SyncBurstResult, type WireRequest } from './http1.js';
import { Http2BurstClient } from './http2.js';
import {
  type ObservedResponse,
  type Verdict,
  ScenarioError,
  isHttpUrl,
  validateScenario,
  validateDelays,
  validateRequest,
  validateVerdicts,
  type ScenarioDefinition,
  type ScenarioRequest,
  type TrialContext,
} from 'raceguard/run';

/** The response header a target may set to the time it received the complete request (ms, epoch, fractional). */
export const ARRIVAL_HEADER = 'x-raceguard-received';

/** Options of {@link runScenario}. */
export interface RunScenarioOptions {
  /** Overrides the scenario's target. */
  readonly target?: string;
  /** Overrides the scenario's trials. */
  readonly trials?: number;
  /** Refuse to run more requests than this in total (bursts × count). @default 10000 */
  readonly maxRequests?: number;
  /** Stop starting trials after this long. @default 300000 */
  readonly maxDurationMs?: number;
  /** Pause between the partial writes and the release. @default 20 */
  readonly settleMs?: number;
  /** Overrides the scenario's `burst.protocol`. */
  readonly protocol?: 'http1' | 'http2' | 'http1-pipeline';
  /** Overrides the scenario's `burst.count` (requests per burst). */
  readonly count?: number;
  /** Overrides the scenario's `allowNoSuccess`. */
  readonly allowNoSuccess?: boolean;
  /**
   * Response header carrying the time the target received the complete
   * request (ms since the epoch, fractional).
   * @default 'x-raceguard-received'
   */
  readonly arrivalHeader?: string;
  /**
   * Delays for the service's `delayPoint`s, ms by point name, added to (and
   * overriding) the scenario's `delays`; sent with every burst request as
   * `x-raceguard-delay`.
   */
  readonly delays?: Readonly<Record<string, number>>;
  /**
   * The control URL of a `raceguard proxy` in front of the service's
   * database (`http://HOST:PORT`): where the database-side delays are set.
   */
  readonly proxy?: string;
  /** Database-side delays added to the scenario's `dbDelays`; they need {@link proxy}. */
  readonly dbDelays?: readonly DbDelay[];
  /**
   * Keep every burst as a history in the trial reports (requests as inputs,
   * responses as outputs) even when the scenario names no model.
   * @default false
   */
  readonly recordHistory?: boolean;
  /**
   * Fire one unscored burst before the first trial (with the scenario's
   * setup and teardown around it), so the first scored burst does not pay
   * for cold connections, code and caches on either side: without it, first
   * trials were seen with up to 8 ms of release spread against a median
   * below 1 ms.
   * @default true
   */
  readonly warmup?: boolean;
  readonly signal?: AbortSignal;
  /** Called after each trial. */
  readonly onTrial?: (trial: TrialReport) => void;
}

/** One trial's outcome. */
export interface TrialReport {
  readonly trial: number;
  readonly verdicts: readonly Verdict[];
  readonly violated: boolean;
  /** Status code to count. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Time the client took to release every final byte, ms. */
  readonly sendSpreadMs: number;
  /** Spread of the target's arrival timestamps, ms, when it sends {@link ARRIVAL_HEADER}. */
  readonly arrivalSpreadMs: number | null;
  readonly latenciesMs: readonly number[];
  /**
   * The trial proved nothing: setup, burst, check or teardown threw, or no
   * request of the burst succeeded. It counts as an error, not a violation;
   * the message starts with the phase (`check threw: ...`, `burst: no request succeeded ...`).
   */
  readonly error?: string;
  /** The phase that failed, with {@link error}. */
  readonly phase?: TrialPhase;
  /** Something the verdict should be read with (no request succeeded, under `allowNoSuccess`). */
  readonly warning?: string;
  /**
   * For a trial with a violated invariant: some of its responses (the first
   * successes, then the first failures), as evidence of who won.
   */
  readonly evidence?: readonly EvidenceResponse[];
  /** The burst as a history of operations (with `history` in the scenario, or `recordHistory`). */
  readonly history?: TrialHistory;
}

/** One trial's burst as a history, and its linearizability verdict when the scenario names a model. */
export interface TrialHistory {
  /** The model, when the scenario's `history` names one. */
  readonly model?: string;
  /** Client = request index (0-based), times in ms from the release. */
  readonly operations: readonly Operation[];
  readonly verdict?: 'linearizable' | 'not-linearizable' | 'unknown';
  /** Indexes into `operations` of the shortest failing prefix. */
  readonly minimalPrefix?: readonly number[];
  /** Index into `operations` of the operation whose return breaks linearizability. */
  readonly culprit?: number;
}

/** A response kept as evidence of a race. */
export interface EvidenceResponse {
  /** 0-based position in the burst (people read it as "request index + 1"). */
  readonly index: number;
  readonly method: string;
  readonly path: string;
  /** The request body as sent (truncated to 2 000 characters). */
  readonly requestBody?: string;
  readonly status: number;
  /** The response body (truncated to 2 000 characters). */
  readonly body: string;
}

/** The parts of a trial, in order. */
export type TrialPhase = 'setup' | 'burst' | 'check' | 'teardown';

/** The aggregate of one scenario. */
export interface ScenarioReport {
  readonly name: string;
  readonly target: string;
  /** The scenario file, when run from the CLI. */
  readonly file?: string;
  /**
   * The scenario could not run at all (invalid file, unreachable target,
   * over a cap, no database for `sql()`): no trial ran, or the run stopped.
   */
  readonly error?: string;
  /** Trials with a {@link TrialReport.warning}. */
  readonly warnedTrials: number;
  readonly trials: number;
  readonly violatedTrials: number;
  readonly erroredTrials: number;
  /** Invariant name to the trials that violated it and the first explanation. */
  readonly invariants: Readonly<
    Record<
      string,
      {
        readonly violations: number;
        /** The first violation's explanation, with its trial number (1-based). */
        readonly example: string | null;
        /** Responses of the trial of {@link example}. */
        readonly evidence: readonly EvidenceResponse[];
      }
    >
  >;
  readonly statuses: Readonly<Record<string, number>>;
  readonly sendSpreadMs: { readonly median: number; readonly p95: number };
  readonly arrivalSpreadMs: { readonly median: number; readonly p95: number } | null;
  readonly latencyMs: { readonly p50: number; readonly p99: number };
  readonly trialReports: readonly TrialReport[];
}

/** The run was refused or stopped by a safety cap. */
export class RunCapError extends RaceguardError {
  constructor(message: string) {
    super('RACEGUARD_RUN_CAP', message);
  }
}

function toWire(request: ScenarioRequest): WireRequest {
  const headers: Record<string, string> = { ...request.headers };
  let body: string | undefined = request.body;
  if (request.json !== undefined) {
    body = JSON.stringify(request.json);
    headers['content-type'] ??= 'application/json';
  }
  return {
    // A read unless it carries something to write.
    method: request.method ?? (body === undefined ? 'GET' : 'POST'),
    path: request.path,
    headers,
    ...(body !== undefined && { body }),
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

type SqlPool = {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
};

async function openSql(url: string | undefined): Promise<SqlPool | undefined> {
  if (url === undefined || url === '') return undefined;
  const pg = (
    await import('pg').catch((error: unknown) => {
      throw new ScenarioError(
        'databaseUrl',
        'usable: install the pg driver (npm install pg)',
        url,
        { cause: error },
      );
    })
  ).default;
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Run `scenario` and report, per invariant, the trials that violated it.
 * Refuses up front when `trials × burst.count` exceeds `maxRequests`.
 *
 * @example
 * ```ts
 * const report = await runScenario(scenario, { trials: 20 });
 * assert.equal(report.violatedTrials, 0, JSON.stringify(report.invariants));
 * ```
 */
export async function runScenario(
  scenario: ScenarioDefinition,
  options: RunScenarioOptions = {},
): Promise<ScenarioReport> {
  validateScenario(scenario, 'scenario');
  validateRunOptions(options);
  const settings = settingsOf(scenario, options);
  const dbDelays = dbDelaysOf(scenario, options);
  if (dbDelays === undefined) return runScenarioBursts(scenario, options, settings);
  await dbDelays.proxy.setDelays(dbDelays.delays);
  try {
    return await runScenarioBursts(scenario, options, settings);
  } finally {
    await dbDelays.proxy.setDelays([]).catch(() => undefined);
  }
}

/** The database-side delays a run asks for, checked, and the proxy that applies them. */
function dbDelaysOf(
  scenario: ScenarioDefinition,
  options: RunScenarioOptions,
): { proxy: ProxyClient; delays: DbDelay[] } | undefined {
  const delays = [...(scenario.dbDelays ?? []), ...(options.dbDelays ?? [])];
  delays.forEach((delay, i) => delayMatcher(delay, `dbDelays[${i}]`));
  if (delays.length === 0) return undefined;
  if (options.proxy === undefined) {
    throw new ScenarioError(
      'dbDelays',
      'a raceguard proxy to apply them (--proxy <its control URL>)',
      delays.map((d) => `${d.pattern}=${d.ms}`).join(', '),
    );
  }
  return { proxy: new ProxyClient(options.proxy), delays };
}

async function runScenarioBursts(
  scenario: ScenarioDefinition,
  options: RunScenarioOptions,
  settings: RunSettings,
): Promise<ScenarioReport> {
  checkRequestCap(scenario.name, settings.trials, settings.count, settings.maxRequests);
  const helpers = openHelpers(scenario, settings.target);
  const opening = openBurstClient(scenario, options, settings);
  let client: ScenarioBurstClient;
  try {
    client = await untilAborted(opening, options.signal);
  } catch (error) {
    // Interrupted while warming: the connections close once they are open.
    opening.then((opened) => opened.close()).catch(() => undefined);
    await helpers.close(true);
    throw error;
  }
  const run: ScenarioRun = { scenario, options, settings, client, helpers };
  const reports: TrialReport[] = [];
  const started = performance.now();
  const work = async (): Promise<void> => {
    if (options.warmup !== false) await warmUpScenario(run);
    for (let trial = 0; trial < settings.trials; trial += 1) {
      if (isAborted(options.signal)) throw new AbortedError(options.signal?.reason);
      if (performance.now() - started > settings.maxDurationMs) {
        throw new RunCapError(
          `${scenario.name}: stopped after ${trial} trials: the ${settings.maxDurationMs} ms duration cap passed`,
        );
      }
      const report = await runTrial(run, trial);
      reports.push(report);
      options.onTrial?.(report);
    }
  };
  try {
    // An abort ends the run at once, even while the target holds a request.
    await untilAborted(work(), options.signal);
  } finally {
    // After an abort a trial may still wait on the target: its connections are torn down.
    client.close();
    await helpers.close(isAborted(options.signal));
  }
  return summarise(scenario.name, settings.target, reports);
}

/** A run's settings: the options over the scenario's own, with defaults. */
interface RunSettings {
  readonly target: string;
  readonly trials: number;
  readonly count: number;
  readonly allowNoSuccess: boolean;
  readonly arrivalHeader: string;
  readonly maxRequests: number;
  readonly maxDurationMs: number;
  readonly delays: Readonly<Record<string, number>>;
  /** The delay header every burst request carries, if any delay is asked for. */
  readonly delayHeader: string | undefined;
}

function settingsOf(scenario: ScenarioDefinition, options: RunScenarioOptions): RunSettings {
  const trials = options.trials ?? scenario.trials ?? 10;
  if (!Number.isSafeInteger(trials) || trials < 1)
    throw new ScenarioError('trials', 'a positive integer', trials);
  const delays = { ...scenario.delays, ...options.delays };
  return {
    target: (options.target ?? scenario.target).replace(/\/+$/, ''),
    trials,
    count: options.count ?? scenario.burst.count,
    allowNoSuccess: options.allowNoSuccess ?? scenario.allowNoSuccess ?? false,
    arrivalHeader: (options.arrivalHeader ?? ARRIVAL_HEADER).toLowerCase(),
    maxRequests: options.maxRequests ?? 10_000,
    maxDurationMs: options.maxDurationMs ?? 300_000,
    delays,
    delayHeader: Object.keys(delays).length === 0 ? undefined : formatDelays(delays),
  };
}

/** What fires a burst, whatever the protocol. */
interface ScenarioBurstClient {
  fire(requests: readonly WireRequest[]): Promise<SyncBurstResult>;
  close(): void;
}

/** Open (and warm) the burst's connections for the scenario's protocol. */
async function openBurstClient(
  scenario: ScenarioDefinition,
  options: RunScenarioOptions,
  settings: RunSettings,
): Promise<ScenarioBurstClient> {
  const protocol = options.protocol ?? scenario.burst.protocol ?? 'http1';
  const settle = options.settleMs !== undefined ? { settleMs: options.settleMs } : {};
  if (protocol === 'http2') {
    return await Http2BurstClient.open(settings.target, {
      streams: settings.count,
      insecure: scenario.insecure === true,
      ...settle,
    });
  }
  const pipeline = protocol === 'http1-pipeline';
  const http1 = await Http1BurstClient.open(settings.target, {
    // Pipelined, the whole burst goes on one connection.
    connections: pipeline ? 1 : settings.count,
    ...settle,
    ...(scenario.insecure === true && { insecure: true }),
  });
  return {
    fire: (requests) => http1.fire(requests, { pipeline }),
    close: () => http1.close(),
  };
}

/** The `http()` and `sql()` a scenario's setup and checks are given, and how to close them. */
/** The `http` and `sql` helpers a scenario's setup, checks and teardown get. */
export interface ScenarioHelpers {
  readonly http: TrialContext['http'];
  readonly sql: TrialContext['sql'];
  /** Close the helper connections (`abort`: tear them down, a request may still be held). */
  close(abort: boolean): Promise<void>;
}

/** Opens a scenario's helpers against `target` (also used by `raceguard audit`). */
export function openHelpers(scenario: ScenarioDefinition, target: string): ScenarioHelpers {
  const helper = new Pool(target, {
    connections: 4,
    ...(scenario.insecure === true && { connect: { rejectUnauthorized: false } }),
  });
  // Opened on the first sql() call: a scenario that reads over HTTP needs no driver.
  let sqlPool: Promise<SqlPool | undefined> | undefined;
  return {
    http: async (request) => {
      validateRequest(request, 'http()');
      const wire = toWire(request);
      const response = await undiciRequest(`${target}${wire.path}`, {
        dispatcher: helper,
        method: wire.method as 'GET',
        ...(wire.headers !== undefined && { headers: wire.headers }),
        ...(wire.body !== undefined && { body: wire.body }),
      });
      const text = await response.body.text();
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
      }
      return { status: response.statusCode, headers, text, json: parseJson(text) };
    },
    sql: async (text, values = []) => {
      const pool = await (sqlPool ??= openSql(scenario.databaseUrl ?? process.env.DATABASE_URL));
      if (pool === undefined) {
        throw new ScenarioError('databaseUrl', 'set (or DATABASE_URL) for sql() checks', undefined);
      }
      return (await pool.query(text, [...values])).rows;
    },
    close: async (abort) => {
      if (abort) await helper.destroy().catch(() => undefined);
      else await helper.close();
      (await sqlPool?.catch(() => undefined))?.end().catch(() => undefined);
    },
  };
}

/** What every step of a run shares. */
interface ScenarioRun {
  readonly scenario: ScenarioDefinition;
  readonly options: RunScenarioOptions;
  readonly settings: RunSettings;
  readonly client: ScenarioBurstClient;
  readonly helpers: ScenarioHelpers;
}

function contextOf(run: ScenarioRun, trial: number): TrialContext {
  const { http, sql } = run.helpers;
  return { trial, target: run.settings.target, http, sql, state: {} };
}

/** The burst's request templates for a trial. */
function templatesFor(run: ScenarioRun, context: TrialContext): ScenarioRequest[] {
  const { request } = run.scenario.burst;
  return Array.from({ length: run.settings.count }, (_, i) => {
    const template = typeof request === 'function' ? request(i, context) : request;
    validateRequest(template, `burst.request(${i})`);
    return template;
  });
}

/** Run the scenario's teardown, if any, ignoring what it throws. */
async function teardownQuietly(run: ScenarioRun, context: TrialContext): Promise<void> {
  await Promise.resolve()
    .then(() => run.scenario.teardown?.(context))
    .catch(() => undefined);
}

/** One unscored burst: what it finds is not reported; a failure here shows again in trial 1. */
async function warmUpScenario(run: ScenarioRun): Promise<void> {
  const context = contextOf(run, 0);
  try {
    await run.scenario.setup?.(context);
    await run.client.fire(templatesFor(run, context).map((template) => toWire(template)));
  } catch (error) {
    if (error instanceof ScenarioError) throw error;
  } finally {
    await teardownQuietly(run, context);
  }
}

/** What a trial's burst measured; it survives a check that throws. */
type Measured = Omit<TrialReport, 'trial' | 'verdicts' | 'violated'>;

/** One trial: setup, burst, check, teardown; a step that throws makes it an errored trial. */
async function runTrial(run: ScenarioRun, trial: number): Promise<TrialReport> {
  const { scenario } = run;
  const context = contextOf(run, trial);
  let phase: TrialPhase = 'setup';
  let measured: Measured = {
    statuses: {},
    sendSpreadMs: Number.NaN,
    arrivalSpreadMs: null,
    latenciesMs: [],
  };
  let report: TrialReport;
  try {
    await scenario.setup?.(context);
    phase = 'burst';
    const burst = await fireBurst(run, context);
    measured = burst.measured;
    phase = 'check';
    report = await judge(run, context, burst);
  } catch (error) {
    if (error instanceof ScenarioError || error instanceof AbortedError) {
      await teardownQuietly(run, context);
      throw error;
    }
    report = {
      trial,
      verdicts: [],
      violated: false,
      ...measured,
      error: `${phase} threw: ${messageOf(error)}`,
      phase,
    };
  }
  try {
    await scenario.teardown?.(context);
  } catch (error) {
    // The trial's verdicts stand; a failed teardown makes it an errored trial too.
    if (report.error === undefined)
      report = { ...report, error: `teardown threw: ${messageOf(error)}`, phase: 'teardown' };
  }
  return report;
}

/** A fired burst: what came back, as the checks see it, and what was measured. */
interface FiredBurst {
  readonly burst: SyncBurstResult;
  readonly responses: ObservedResponse[];
  readonly measured: Measured;
}

/** Fire the trial's burst (with the delay header, if any) and observe its responses. */
async function fireBurst(run: ScenarioRun, context: TrialContext): Promise<FiredBurst> {
  const { delayHeader, arrivalHeader } = run.settings;
  const templates = templatesFor(run, context);
  const wires = templates.map((template) => {
    const wire = toWire(template);
    return delayHeader === undefined
      ? wire
      : { ...wire, headers: { ...wire.headers, [DELAY_HEADER]: delayHeader } };
  });
  const burst = await run.client.fire(wires);
  const responses: ObservedResponse[] = burst.responses.map((r) => {
    const wire = wires[r.index] as WireRequest;
    const sent = templates[r.index] as ScenarioRequest;
    return {
      index: r.index,
      status: r.status,
      headers: r.headers,
      text: r.error ?? r.text,
      json: parseJson(r.text),
      request: {
        method: wire.method,
        path: wire.path,
        headers: wire.headers ?? {},
        ...(sent.json !== undefined && { json: sent.json }),
        ...(typeof wire.body === 'string' && { body: wire.body }),
      },
    };
  });
  const arrivals = burst.responses
    .map((r) => Number(r.headers[arrivalHeader]))
    .filter((n) => Number.isFinite(n));
  const statuses: Record<string, number> = {};
  for (const r of burst.responses) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const measured: Measured = {
    statuses,
    sendSpreadMs: burst.sendSpreadMs,
    arrivalSpreadMs:
      arrivals.length === burst.responses.length && arrivals.length > 0
        ? Math.max(...arrivals) - Math.min(...arrivals)
        : null,
    latenciesMs: burst.responses.map((r) => r.latencyMs),
  };
  return { burst, responses, measured };
}

/**
 * The trial's verdicts: the scenario's checks, linearizability when it
 * names a model; an error when the burst never reached the code under test
 * (no success, or a delay point no request reached).
 */
async function judge(
  run: ScenarioRun,
  context: TrialContext,
  { burst, responses, measured }: FiredBurst,
): Promise<TrialReport> {
  const { scenario, options, settings } = run;
  const noSuccess = responses.some((r) => r.status >= 200 && r.status < 300)
    ? undefined
    : `no request succeeded: ${describeFailures(responses)}; the burst never reached the code under test`;
  const unreached =
    settings.delayHeader === undefined
      ? undefined
      : unreachedDelays(Object.keys(settings.delays), burst);
  const history = historyOf(scenario, options, responses, burst);
  const verdicts = [
    ...validateVerdicts(await scenario.check({ ...context, responses })),
    ...(history?.verdict === undefined ? [] : [linearizabilityVerdict(history)]),
  ];
  const violated = verdicts.some((v) => !v.ok);
  return {
    trial: context.trial,
    verdicts,
    violated,
    ...measured,
    ...(violated && { evidence: evidenceOf(responses) }),
    ...(history !== undefined && { history }),
    ...(unreached !== undefined && { error: `burst: ${unreached}`, phase: 'burst' as const }),
    ...(unreached === undefined &&
      noSuccess !== undefined &&
      (settings.allowNoSuccess
        ? { warning: noSuccess }
        : { error: `burst: ${noSuccess}`, phase: 'burst' as const })),
  };
}

/**
 * The `--delay` points no request of the burst reached, said as an error, when
 * the target reports them (the raceguard HTTP adapters send
 * `x-raceguard-delay-reached`): a window that never opened proves nothing.
 */
function unreachedDelays(points: readonly string[], burst: SyncBurstResult): string | undefined {
  const reports = burst.responses.flatMap((r) => {
    const value = r.headers[DELAY_REACHED_HEADER];
    return value === undefined ? [] : [value];
  });
  if (reports.length === 0) return undefined;
  const reached = new Set(reports.flatMap((value) => value.split(',').map((p) => p.trim())));
  const missed = points.filter((point) => !reached.has(point));
  if (missed.length === 0) return undefined;
  return `delay point${missed.length > 1 ? 's' : ''} ${missed.join(', ')} reached by no request of the burst: the window was not widened (is the point on this request's path, spelled as in the code?)`;
}

/** `work`, or an `AbortedError` as soon as `signal` aborts (what `work` does then is ignored). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      work.catch(() => undefined);
      reject(new AbortedError(signal.reason));
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** The burst as a history; checked against the scenario's model when it names one. */
function historyOf(
  scenario: ScenarioDefinition,
  options: RunScenarioOptions,
  responses: readonly ObservedResponse[],
  burst: SyncBurstResult,
): TrialHistory | undefined {
  if (scenario.history === undefined && options.recordHistory !== true) return undefined;
  const latency = new Map(burst.responses.map((r) => [r.index, r.latencyMs]));
  const operations: Operation[] = [];
  for (const response of responses) {
    const unknown = response.status === 0; // no response: it may or may not have taken effect
    const mapped =
      scenario.history === undefined
        ? {
            input: response.request,
            output: { status: response.status, body: response.json ?? response.text },
          }
        : scenario.history.operation(response);
    if (mapped === undefined) continue;
    operations.push({
      client: response.index,
      input: mapped.input,
      output: unknown ? undefined : mapped.output,
      call: 0,
      return: unknown ? Number.POSITIVE_INFINITY : (latency.get(response.index) ?? 0),
    });
  }
  if (scenario.history === undefined) return { operations };
  const result = checkLinearizable(modelByName(scenario.history.model), operations, {
    timeoutMs: 10_000,
  });
  const prefix = new Set(result.minimalPrefix ?? []);
  const culprit = result.culprit === undefined ? -1 : operations.indexOf(result.culprit);
  return {
    model: scenario.history.model,
    operations,
    verdict: result.verdict,
    ...(result.minimalPrefix !== undefined && {
      minimalPrefix: operations.flatMap((op, index) => (prefix.has(op) ? [index] : [])),
    }),
    ...(culprit >= 0 && { culprit }),
  };
}

function linearizabilityVerdict(history: TrialHistory): Verdict {
  const culprit = history.culprit === undefined ? undefined : history.operations[history.culprit];
  return {
    invariant: 'linearizable',
    ok: history.verdict !== 'not-linearizable',
    detail:
      history.verdict === 'linearizable'
        ? `the ${history.operations.length} requests are linearizable as a ${history.model}`
        : history.verdict === 'unknown'
          ? `no verdict on linearizability within 10 s (${history.operations.length} requests)`
          : `no order of the ${history.operations.length} requests as operations on a ${history.model} explains what they returned` +
            (culprit === undefined
              ? ''
              : `: request ${Number(culprit.client) + 1} (${JSON.stringify(culprit.input)}) returned ${JSON.stringify(culprit.output)}`),
  };
}

const clip = (text: string): string => (text.length > 2000 ? `${text.slice(0, 1997)}...` : text);

/** The first successes (up to 5) and failures (up to 3) of a burst. */
function evidenceOf(responses: readonly ObservedResponse[]): EvidenceResponse[] {
  const ok = (r: ObservedResponse): boolean => r.status >= 200 && r.status < 300;
  return [...responses.filter(ok).slice(0, 5), ...responses.filter((r) => !ok(r)).slice(0, 3)].map(
    (r) => ({
      index: r.index,
      method: r.request.method,
      path: r.request.path,
      ...(r.request.body !== undefined && { requestBody: clip(r.request.body) }),
      status: r.status,
      body: clip(r.text),
    }),
  );
}

/** What the responses of a burst in which nothing succeeded were: `every response was 404`. */
function describeFailures(responses: readonly ObservedResponse[]): string {
  const counts = new Map<number, number>();
  for (const r of responses) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const name = (status: number): string =>
    status === 0 ? 'no response (connection failed)' : String(status);
  if (counts.size === 1) {
    const [status] = [...counts.keys()];
    const sample = responses[0]?.text.slice(0, 80) ?? '';
    return `every response was ${name(status ?? 0)}${sample === '' ? '' : ` (${JSON.stringify(sample)})`}`;
  }
  return [...counts]
    .sort(([, a], [, b]) => b - a)
    .map(([status, n]) => `${n}× ${name(status)}`)
    .join(', ');
}

function checkRequestCap(name: string, trials: number, count: number, maxRequests: number): void {
  const total = trials * count;
  if (total > maxRequests) {
    throw new RunCapError(
      `${name}: ${trials} trials × ${count} requests = ${total} exceeds the cap of ${maxRequests} (raise --max-requests if you mean it)`,
    );
  }
}

function validateRunOptions(options: RunScenarioOptions): void {
  assertPlainObject('options', options);
  if (options.target !== undefined && !isHttpUrl(options.target))
    throw new InvalidArgumentError('options.target', 'an http:// or https:// URL', options.target);
  if (options.trials !== undefined) assertPositiveInteger('options.trials', options.trials);
  if (
    options.count !== undefined &&
    (!Number.isSafeInteger(options.count) || options.count < 1 || options.count > 10_000)
  )
    throw new InvalidArgumentError('options.count', 'an integer from 1 to 10000', options.count);
  if (options.maxRequests !== undefined)
    assertPositiveInteger('options.maxRequests', options.maxRequests);
  if (options.maxDurationMs !== undefined)
    assertPositiveInteger('options.maxDurationMs', options.maxDurationMs);
  if (options.settleMs !== undefined) assertNonNegativeFinite('options.settleMs', options.settleMs);
  if (options.protocol !== undefined)
    assertOneOf('options.protocol', options.protocol, ['http1', 'http2', 'http1-pipeline']);
  if (
    options.arrivalHeader !== undefined &&
    (typeof options.arrivalHeader !== 'string' ||
      !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(options.arrivalHeader))
  )
    throw new InvalidArgumentError(
      'options.arrivalHeader',
      'an HTTP header name',
      options.arrivalHeader,
    );
  if (options.delays !== undefined) validateDelays(options.delays, 'options.delays');
  if (options.recordHistory !== undefined && typeof options.recordHistory !== 'boolean') {
    throw new InvalidArgumentError('options.recordHistory', 'a boolean', options.recordHistory);
  }
  assertAbortSignal('options.signal', options.signal);
}

/**
 * The report of a scenario that could not run at all (it did not load, its
 * target was unreachable, it was over a cap): no trials, the reason in `error`.
 *
 * @example
 * ```ts
 * reports.push(erroredReport('race/checkout.json', 'http://127.0.0.1:3000', messageOf(error)));
 * ```
 */
export function erroredReport(
  name: string,
  target: string,
  error: string,
  file?: string,
  trialReports: readonly TrialReport[] = [],
): ScenarioReport {
  return {
    ...summarise(name, target, trialReports),
    ...(file !== undefined && { file }),
    error,
  };
}

function summarise(name: string, target: string, reports: readonly TrialReport[]): ScenarioReport {
  const invariants: Record<
    string,
    { violations: number; example: string | null; evidence: readonly EvidenceResponse[] }
  > = {};
  const statuses: Record<string, number> = {};
  for (const report of reports) {
    for (const verdict of report.verdicts) {
      const entry = (invariants[verdict.invariant] ??= {
        violations: 0,
        example: null,
        evidence: [],
      });
      if (!verdict.ok) {
        entry.violations += 1;
        if (entry.example === null) {
          entry.example = `trial ${report.trial + 1}: ${verdict.detail}`;
          entry.evidence = report.evidence ?? [];
        }
      }
    }
    for (const [status, n] of Object.entries(report.statuses))
      statuses[status] = (statuses[status] ?? 0) + n;
  }
  const sends = reports.map((r) => r.sendSpreadMs).filter((n) => Number.isFinite(n));
  const arrivals = reports.flatMap((r) => (r.arrivalSpreadMs === null ? [] : [r.arrivalSpreadMs]));
  const latencies = reports.flatMap((r) => r.latenciesMs);
  return {
    name,
    target,
    trials: reports.length,
    violatedTrials: reports.filter((r) => r.violated).length,
    erroredTrials: reports.filter((r) => r.error !== undefined).length,
    warnedTrials: reports.filter((r) => r.warning !== undefined).length,
    invariants,
    statuses,
    sendSpreadMs: { median: percentile(sends, 50), p95: percentile(sends, 95) },
    arrivalSpreadMs:
      arrivals.length > 0
        ? { median: percentile(arrivals, 50), p95: percentile(arrivals, 95) }
        : null,
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
    trialReports: reports,
  };
}
