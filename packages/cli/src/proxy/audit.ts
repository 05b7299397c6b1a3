/**
 * `auditScenario`: find a scenario's races from one sequential pass. Its
 * setup runs, its burst request is sent once or twice, one at a time, through
 * the application that talks to the database via `raceguard proxy`; the SQL
 * each request caused is analysed for what two concurrent copies could do
 * (race-analysis.ts). With `confirm`, each finding is then attacked: the
 * scenario's own burst runs while the proxy holds back the finding's read,
 * and the scenario's checks say whether the race happened.
 */
import { AbortedError } from 'raceguard';
import type { ScenarioDefinition, TrialContext } from 'raceguard/run';
import { messageOf } from '../arguments.js';
import { openHelpers, runScenario } from '../run/run-scenario.js';
import { ProxyClient } from './proxy-client.js';
import { analyseRequest, type Finding, type UniqueIndexes } from './race-analysis.js';
import type { RecordedStatement } from './recorder.js';

/** Options of {@link auditScenario}. */
export interface AuditOptions {
  /** The proxy's control URL (`http://HOST:PORT`, printed by `raceguard proxy --control`). */
  readonly proxy: string;
  /** Overrides the scenario's target. */
  readonly target?: string;
  /** Requests sent one after the other (each analysed on its own). @default 2 */
  readonly requests?: number;
  /** Attack each finding with the scenario's burst and a delay on its read. @default false */
  readonly confirm?: boolean;
  /** Bursts per finding when confirming. @default 5 */
  readonly confirmTrials?: number;
  /** Milliseconds the finding's read is held back while confirming. @default 150 */
  readonly confirmDelayMs?: number;
  /** Where to read unique indexes from. @default the scenario's databaseUrl, else DATABASE_URL */
  readonly databaseUrl?: string;
  readonly signal?: AbortSignal;
}

/** One finding as reported. */
export interface AuditFinding {
  readonly anomaly: Finding['anomaly'];
  readonly table: string;
  readonly columns: readonly string[];
  /** The read, then the write. */
  readonly statements: readonly [string, string];
  readonly isolation: string;
  readonly why: string;
  readonly fix: string;
  /** With `confirm`: whether the targeted burst broke the scenario's checks (`null`: not tried). */
  readonly confirmed: boolean | null;
  /** With `confirm`: `violated in 5 of 5 bursts`. */
  readonly confirmation?: string;
}

/** What the audit says of one scenario. */
export interface AuditResult {
  readonly scenario: string;
  readonly file?: string;
  readonly verdict: 'race' | 'safe' | 'unknown';
  /** Why the verdict is `unknown`, or a note on a `safe` one. */
  readonly reason?: string;
  readonly findings: readonly AuditFinding[];
  /** Writes recognised as safe, with the shape that makes them so. */
  readonly safe: readonly { readonly statement: string; readonly shape: string }[];
  /** Statements the requests sent. */
  readonly statements: number;
}

/**
 * Audits one scenario; rejects only on a broken proxy, target or scenario.
 *
 * @example
 * ```ts
 * const result = await auditScenario(scenario, { proxy: 'http://127.0.0.1:6433', confirm: true });
 * for (const f of result.findings) console.log(f.anomaly, f.statements, f.fix, f.confirmed);
 * ```
 */
export async function auditScenario(
  scenario: ScenarioDefinition,
  options: AuditOptions,
): Promise<AuditResult> {
  const proxy = new ProxyClient(options.proxy);
  const target = options.target ?? scenario.target;
  const traces = await recordRequests(scenario, target, proxy, options);
  const statements = traces.reduce((n, t) => n + t.length, 0);
  if (statements === 0) {
    return {
      scenario: scenario.name,
      verdict: 'unknown',
      reason:
        'the requests sent no SQL through the proxy (does the service use it? a race in memory is not visible in SQL)',
      findings: [],
      safe: [],
      statements,
    };
  }
  const unique = await uniqueIndexes(
    options.databaseUrl ?? scenario.databaseUrl ?? process.env.DATABASE_URL,
    traces.flat(),
  );
  const analyses = traces.map((trace) => analyseRequest(trace, unique));
  const findings = distinctBy(
    analyses.flatMap((a) => a.findings),
    (f) => `${f.anomaly}\0${f.read.text}\0${f.write.text}`,
  );
  const safe = distinctBy(
    analyses.flatMap((a) => a.safe.map((s) => ({ statement: s.write.text, shape: s.shape }))),
    (s) => `${s.statement}\0${s.shape}`,
  );
  const reported: AuditFinding[] = [];
  for (const finding of findings) {
    const base = reportOf(finding);
    reported.push(
      options.confirm === true
        ? await confirm(scenario, target, proxy, finding, base, options)
        : base,
    );
  }
  return {
    scenario: scenario.name,
    verdict: reported.length > 0 ? 'race' : 'safe',
    findings: reported,
    safe,
    statements,
  };
}

/** Setup, then each request alone and labelled, then teardown: the SQL of each request. */
async function recordRequests(
  scenario: ScenarioDefinition,
  target: string,
  proxy: ProxyClient,
  options: AuditOptions,
): Promise<RecordedStatement[][]> {
  const helpers = openHelpers(scenario, target);
  const context: TrialContext = {
    trial: 0,
    target,
    http: helpers.http,
    sql: helpers.sql,
    state: {},
  };
  const requests = options.requests ?? 2;
  const labels = Array.from({ length: requests }, (_, i) => `${scenario.name} #${i + 1}`);
  try {
    await scenario.setup?.(context);
    await proxy.clearTrace();
    for (const [i, label] of labels.entries()) {
      if (options.signal?.aborted === true) throw new AbortedError(options.signal.reason);
      const { request } = scenario.burst;
      await proxy.label(label);
      try {
        await helpers.http(typeof request === 'function' ? request(i, context) : request);
      } finally {
        await proxy.label(null);
      }
    }
    const trace = await proxy.trace();
    return labels.map((label) => trace.filter((s) => s.label === label));
  } finally {
    await Promise.resolve()
      .then(() => scenario.teardown?.(context))
      .catch(() => undefined);
    await helpers.close(false);
  }
}

/** The finding's read held back while the scenario's burst runs; its checks decide. */
async function confirm(
  scenario: ScenarioDefinition,
  target: string,
  proxy: ProxyClient,
  finding: Finding,
  base: AuditFinding,
  options: AuditOptions,
): Promise<AuditFinding> {
  const trials = options.confirmTrials ?? 5;
  const pattern = `/^${escapeRegExp(finding.read.text)}$/`;
  try {
    const report = await runScenario(scenario, {
      target,
      trials,
      warmup: false,
      proxy: proxy.url,
      dbDelays: [{ pattern, ms: options.confirmDelayMs ?? 150 }],
      ...(options.signal !== undefined && { signal: options.signal }),
    });
    const violated = report.violatedTrials;
    return {
      ...base,
      confirmed: violated > 0,
      confirmation: `violated in ${violated} of ${report.trials} bursts${report.error === undefined ? '' : ` (${report.error})`}`,
    };
  } catch (error) {
    if (error instanceof AbortedError) throw error;
    return { ...base, confirmed: false, confirmation: `could not run: ${messageOf(error)}` };
  }
}

function reportOf(finding: Finding): AuditFinding {
  return {
    anomaly: finding.anomaly,
    table: finding.table,
    columns: finding.columns,
    statements: [finding.read.text, finding.write.text],
    isolation: finding.isolation,
    why: finding.why,
    fix: finding.fix,
    confirmed: null,
  };
}

/** `list` without the items whose `key` an earlier item had. */
function distinctBy<T>(list: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return list.filter((item) => {
    const k = key(item);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The unique indexes (primary keys included) of the tables the trace names. */
async function uniqueIndexes(
  url: string | undefined,
  trace: readonly RecordedStatement[],
): Promise<UniqueIndexes> {
  const tables = [...new Set(trace.flatMap((s) => s.statements.flatMap((x) => x.tables)))];
  const found = new Map<string, string[][]>();
  if (url === undefined || tables.length === 0) return found;
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: url, application_name: 'raceguard-audit' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ table: string; columns: string[] }>(
      `SELECT c.relname AS table, array_agg(a.attname::text ORDER BY k.ord) AS columns
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indisunique AND c.relname = ANY($1::text[])
        GROUP BY i.indexrelid, c.relname`,
      [tables.map((t) => t.split('.').pop() as string)],
    );
    for (const row of rows) found.set(row.table, [...(found.get(row.table) ?? []), row.columns]);
  } finally {
    await client.end().catch(() => undefined);
  }
  return found;
}
