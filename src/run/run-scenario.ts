/**
 * Run a scenario: for every trial, set up, release the burst by last-byte
 * synchronisation, and evaluate the invariants; aggregate spreads,
 * latencies and violations.
 */
import { Pool, request as undiciRequest } from 'undici';
import { isAborted } from '../core/abort.js';
import { AbortedError, RaceguardError, messageOf } from '../core/errors.js';
import { percentile } from '../burst/percentile.js';
import { Http1BurstClient, type SyncBurstResult, type WireRequest } from './http1.js';
import { Http2BurstClient } from './http2.js';
import type { ObservedResponse, Verdict } from './invariants.js';
import {
  ScenarioError,
  validateScenario,
  validateRequest,
  type HttpReply,
  type ScenarioDefinition,
  type ScenarioRequest,
  type TrialContext,
} from './scenario.js';

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
  readonly protocol?: 'http1' | 'http2';
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
  /** Setup, burst or check threw: the trial counts as an error, not a violation. */
  readonly error?: string;
}

/** The aggregate of one scenario. */
export interface ScenarioReport {
  readonly name: string;
  readonly target: string;
  readonly trials: number;
  readonly violatedTrials: number;
  readonly erroredTrials: number;
  /** Invariant name to the trials that violated it and the first explanation. */
  readonly invariants: Readonly<
    Record<string, { readonly violations: number; readonly example: string | null }>
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
    method: request.method ?? 'POST',
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
  const target = (options.target ?? scenario.target).replace(/\/+$/, '');
  const trials = options.trials ?? scenario.trials ?? 10;
  const maxRequests = options.maxRequests ?? 10_000;
  const maxDurationMs = options.maxDurationMs ?? 300_000;
  if (!Number.isSafeInteger(trials) || trials < 1)
    throw new ScenarioError('trials', 'a positive integer', trials);
  const total = trials * scenario.burst.count;
  if (total > maxRequests) {
    throw new RunCapError(
      `${scenario.name}: ${trials} trials × ${scenario.burst.count} requests = ${total} exceeds the cap of ${maxRequests} (raise --max-requests if you mean it)`,
    );
  }
  const sqlPool = await openSql(scenario.databaseUrl ?? process.env.DATABASE_URL);
  const helper = new Pool(target, {
    connections: 4,
    ...(scenario.insecure === true && { connect: { rejectUnauthorized: false } }),
  });
  const protocol = options.protocol ?? scenario.burst.protocol ?? 'http1';
  const settle = options.settleMs !== undefined ? { settleMs: options.settleMs } : {};
  let client: { fire(requests: readonly WireRequest[]): Promise<SyncBurstResult>; close(): void };
  try {
    client =
      protocol === 'http2'
        ? await Http2BurstClient.open(target, {
            streams: scenario.burst.count,
            insecure: scenario.insecure === true,
            ...settle,
          })
        : await Http1BurstClient.open(target, {
            connections: scenario.burst.count,
            ...settle,
            ...(scenario.insecure === true && { insecure: true }),
          });
  } catch (error) {
    await helper.close();
    await sqlPool?.end();
    throw error;
  }
  const http = async (request: ScenarioRequest): Promise<HttpReply> => {
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
  };
  const sql = async (text: string, values: readonly unknown[] = []) => {
    if (sqlPool === undefined) {
      throw new ScenarioError('databaseUrl', 'set (or DATABASE_URL) for sql() checks', undefined);
    }
    return (await sqlPool.query(text, [...values])).rows;
  };

  const reports: TrialReport[] = [];
  const started = performance.now();
  try {
    for (let trial = 0; trial < trials; trial += 1) {
      if (isAborted(options.signal)) throw new AbortedError(options.signal?.reason);
      if (performance.now() - started > maxDurationMs) {
        throw new RunCapError(
          `${scenario.name}: stopped after ${trial} trials: the ${maxDurationMs} ms duration cap passed`,
        );
      }
      const context: TrialContext = { trial, target, http, sql, state: {} };
      let report: TrialReport;
      try {
        await scenario.setup?.(context);
        const templates = Array.from({ length: scenario.burst.count }, (_, i) => {
          const template =
            typeof scenario.burst.request === 'function'
              ? scenario.burst.request(i, context)
              : scenario.burst.request;
          validateRequest(template, `burst.request(${i})`);
          return toWire(template);
        });
        const burst = await client.fire(templates);
        const responses: ObservedResponse[] = burst.responses.map((r) => ({
          index: r.index,
          status: r.status,
          headers: r.headers,
          text: r.error ?? r.text,
          json: parseJson(r.text),
        }));
        const verdicts = await scenario.check({ ...context, responses });
        const arrivals = burst.responses
          .map((r) => Number(r.headers[ARRIVAL_HEADER]))
          .filter((n) => Number.isFinite(n));
        const statuses: Record<string, number> = {};
        for (const r of burst.responses) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        report = {
          trial,
          verdicts,
          violated: verdicts.some((v) => !v.ok),
          statuses,
          sendSpreadMs: burst.sendSpreadMs,
          arrivalSpreadMs:
            arrivals.length === burst.responses.length && arrivals.length > 0
              ? Math.max(...arrivals) - Math.min(...arrivals)
              : null,
          latenciesMs: burst.responses.map((r) => r.latencyMs),
        };
      } catch (error) {
        if (error instanceof ScenarioError || error instanceof AbortedError) {
          await Promise.resolve()
            .then(() => scenario.teardown?.(context))
            .catch(() => undefined);
          throw error;
        }
        report = {
          trial,
          verdicts: [],
          violated: false,
          statuses: {},
          sendSpreadMs: Number.NaN,
          arrivalSpreadMs: null,
          latenciesMs: [],
          error: messageOf(error),
        };
      }
      try {
        await scenario.teardown?.(context);
      } catch (error) {
        // The trial's verdicts stand; a failed teardown makes it an errored trial too.
        report = { ...report, error: report.error ?? `teardown: ${messageOf(error)}` };
      }
      reports.push(report);
      options.onTrial?.(report);
    }
  } finally {
    client.close();
    await helper.close();
    await sqlPool?.end();
  }
  return summarise(scenario.name, target, reports);
}

function summarise(name: string, target: string, reports: readonly TrialReport[]): ScenarioReport {
  const invariants: Record<string, { violations: number; example: string | null }> = {};
  const statuses: Record<string, number> = {};
  for (const report of reports) {
    for (const verdict of report.verdicts) {
      const entry = (invariants[verdict.invariant] ??= { violations: 0, example: null });
      if (!verdict.ok) {
        entry.violations += 1;
        entry.example ??= `trial ${report.trial + 1}: ${verdict.detail}`;
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
