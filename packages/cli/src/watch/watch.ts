/**
 * `raceguard watch`: the invariants of `raceguard run`'s JSON/YAML checks,
 * read from a live PostgreSQL on an interval, each query in a READ ONLY
 * transaction with a statement timeout, so the watch can never write or
 * hold locks for long. Results are kept as Prometheus metrics; each
 * violation is logged once, with its offending rows (bounded).
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseErrorPosition, withPosition } from '../run/source-position.js';
import { z } from 'zod';
import { sleep, throwIfAborted } from 'raceguard';
import { ScenarioError } from 'raceguard/run';
import { issueError as configIssue, namedVariant } from '../run/config-issues.js';

const Sql = z.object({ sql: z.string().min(1), values: z.array(z.unknown()).optional() }).strict();
const Name = z.string().min(1).optional();

/** The invariant forms, by the key that names them. */
const CHECKS = {
  neverNegative: z.object({ neverNegative: Sql, name: Name }).strict(),
  exactly: z.object({ exactly: z.number().int(), of: Sql, name: Name }).strict(),
  atMostEffects: z.object({ atMostEffects: z.number().int(), of: Sql, name: Name }).strict(),
  /** @deprecated The old spelling of `atMostEffects` (the name `raceguard run` uses); removed in 0.3. */
  atMostN: z.object({ atMostN: z.number().int(), of: Sql, name: Name }).strict(),
  unique: z.object({ unique: Sql, name: Name }).strict(),
  conserved: z.object({ conserved: Sql, total: z.number().finite(), name: Name }).strict(),
} as const;
type CheckName = keyof typeof CHECKS;
/** The kind a check reports: `atMostN` is read as `atMostEffects`. */
type CheckKind = Exclude<CheckName, 'atMostN'>;
const CHECK_NAMES = Object.keys(CHECKS) as CheckName[];
type CheckSpec = { [K in CheckName]: z.infer<(typeof CHECKS)[K]> }[CheckName];

const Config = z
  .object({
    database: z.string().min(1).optional(),
    intervalMs: z.number().int().min(100).optional(),
    statementTimeoutMs: z.number().int().min(1).optional(),
    checks: z.array(z.unknown()).min(1),
  })
  .strict();

/** A parsed watch file. */
export interface WatchConfig {
  readonly database?: string;
  /** @default 15000 */
  readonly intervalMs: number;
  /** @default 5000 */
  readonly statementTimeoutMs: number;
  readonly checks: readonly WatchCheck[];
}

/** One invariant to watch. */
export interface WatchCheck {
  readonly name: string;
  readonly kind: CheckKind;
  readonly sql: string;
  readonly values: readonly unknown[];
  /** `exactly`, `atMostEffects`, `conserved`: the number the value is compared with. */
  readonly expected?: number;
}

/** The outcome of one check in one round. */
export interface CheckResult {
  readonly name: string;
  readonly kind: CheckKind;
  readonly status: 'ok' | 'violated' | 'error';
  /** Why it is violated, or what failed. */
  readonly detail?: string;
  /** Offending rows, at most {@link MAX_ROWS}. */
  readonly rows?: readonly Record<string, unknown>[];
  readonly ms: number;
}

/** Rows kept as evidence of a violation. */
export const MAX_ROWS = 10;

/** Read and validate a watch file (JSON or YAML); a bad field is named. */
export async function loadWatchConfig(file: string): Promise<WatchConfig> {
  const extension = extname(file).toLowerCase();
  if (!['.json', '.yaml', '.yml'].includes(extension))
    throw new ScenarioError(file, 'a .json or .yaml watch file', extension || file);
  const text = await readFile(file, 'utf8');
  let input: unknown;
  const format = extension === '.json' ? 'JSON' : 'YAML';
  try {
    input = format === 'JSON' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const where = parseErrorPosition(format, text, error);
    throw new ScenarioError(
      where === undefined ? file : `${file}:${where.line}:${where.col}`,
      `valid ${format}`,
      (error as Error).message,
    );
  }
  try {
    return parseWatchConfig(input, file);
  } catch (error) {
    // Say where the field is: line and column in the file.
    throw withPosition(error, text);
  }
}

/** Validate a watch configuration object. */
export function parseWatchConfig(input: unknown, where = 'config'): WatchConfig {
  const parsed = Config.safeParse(input);
  if (!parsed.success) throw issueError(parsed.error, input, where, []);
  const checks = parsed.data.checks.map((value, index): WatchCheck => {
    const name = namedVariant(value, CHECK_NAMES, ['checks', index], watchPath(where));
    const check = CHECKS[name].safeParse(value);
    if (!check.success) throw issueError(check.error, value, where, ['checks', index]);
    return toCheck(check.data, index);
  });
  const names = new Set<string>();
  for (const check of checks) {
    if (names.has(check.name))
      throw new ScenarioError(`${where}: checks`, 'distinct check names', check.name);
    names.add(check.name);
  }
  return {
    ...(parsed.data.database !== undefined && { database: parsed.data.database }),
    intervalMs: parsed.data.intervalMs ?? 15_000,
    statementTimeoutMs: parsed.data.statementTimeoutMs ?? 5_000,
    checks,
  };
}

function toCheck(spec: CheckSpec, index: number): WatchCheck {
  const name = spec.name ?? `${CHECK_NAMES.find((n) => n in spec) ?? 'check'} #${index + 1}`;
  const query = (q: {
    readonly sql: string;
    readonly values?: readonly unknown[] | undefined;
  }) => ({
    sql: q.sql,
    values: q.values ?? [],
  });
  if ('neverNegative' in spec) return { name, kind: 'neverNegative', ...query(spec.neverNegative) };
  if ('unique' in spec) return { name, kind: 'unique', ...query(spec.unique) };
  if ('exactly' in spec)
    return { name, kind: 'exactly', ...query(spec.of), expected: spec.exactly };
  if ('atMostEffects' in spec || 'atMostN' in spec) {
    const expected = 'atMostEffects' in spec ? spec.atMostEffects : spec.atMostN;
    return { name, kind: 'atMostEffects', ...query(spec.of), expected };
  }
  return { name, kind: 'conserved', ...query(spec.conserved), expected: spec.total };
}

function issueError(
  error: z.ZodError,
  input: unknown,
  where: string,
  prefix: readonly PropertyKey[],
): ScenarioError {
  return configIssue(error, input, prefix, watchPath(where));
}

/** `config: checks[0].sql`: a path in the watch's words. */
function watchPath(where: string): (path: readonly PropertyKey[]) => string {
  return (path) => {
    const at = path
      .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
      .join('');
    return `${where}: ${at || '(top level)'}`;
  };
}

/** A query as the watch sends it: always the extended protocol (one statement, parameters apart). */
export interface WatchQuery {
  readonly text: string;
  readonly values: unknown[];
  readonly queryMode: 'extended';
}

/** What the watch runs queries on: a pg pool (or anything with `connect()`). */
export interface WatchPool {
  connect(): Promise<{
    query(query: WatchQuery): Promise<{ rows: Record<string, unknown>[] }>;
    release(error?: Error | boolean): void;
  }>;
}

const extended = (text: string, values: unknown[] = []): WatchQuery => ({
  text,
  values,
  queryMode: 'extended',
});

/**
 * Run every check once, each in a READ ONLY transaction with the statement
 * timeout. The server enforces it, not the check's text: the query goes
 * through the extended protocol (one statement; `COMMIT; UPDATE ...` is
 * refused by the server, never run), in a transaction that is READ ONLY,
 * and the session is reset (`DISCARD ALL`, which also drops session
 * advisory locks and settings) before the connection goes back to the
 * pool; a connection that cannot be reset is closed.
 */
export async function runChecks(
  pool: WatchPool,
  config: Pick<WatchConfig, 'checks' | 'statementTimeoutMs'>,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of config.checks) {
    const started = performance.now();
    let client: Awaited<ReturnType<WatchPool['connect']>>;
    try {
      client = await pool.connect();
    } catch (error) {
      // The database is unreachable: every remaining check says so.
      const detail = `cannot reach the database: ${(error as Error).message}`;
      for (const rest of config.checks.slice(results.length))
        results.push({ name: rest.name, kind: rest.kind, status: 'error', detail, ms: 0 });
      return results;
    }
    let broken: Error | undefined;
    try {
      await client.query(extended('BEGIN READ ONLY'));
      await client.query(
        extended("SELECT set_config('statement_timeout', $1, true)", [
          String(config.statementTimeoutMs),
        ]),
      );
      const { rows } = await client.query(extended(check.sql, [...check.values]));
      results.push({ ...judge(check, rows), ms: performance.now() - started });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const detail =
        code === '25006'
          ? `the query writes, and the watch's READ ONLY transaction refused it: ${(error as Error).message}`
          : code === '57014'
            ? `the query ran longer than the statement timeout (${config.statementTimeoutMs} ms) and was cancelled`
            : code === '42601' && /multiple commands/.test((error as Error).message)
              ? 'the check must be a single SQL statement (a ";" separates several): the server refused it and nothing ran'
              : `the query failed: ${(error as Error).message}`;
      if (typeof code !== 'string') broken = error as Error;
      results.push({
        name: check.name,
        kind: check.kind,
        status: 'error',
        detail,
        ms: performance.now() - started,
      });
    } finally {
      // ROLLBACK ends the transaction (a COMMIT in the check's place ended
      // it already: PostgreSQL only warns); DISCARD ALL resets the session.
      for (const reset of ['ROLLBACK', 'DISCARD ALL']) {
        if (broken !== undefined) break;
        await client.query(extended(reset)).catch((error: unknown) => {
          broken = error as Error;
        });
      }
      client.release(broken);
    }
  }
  return results;
}

/** The first column of each row. */
const firstValue = (row: Record<string, unknown>): unknown => Object.values(row)[0];

function judge(
  check: WatchCheck,
  rows: readonly Record<string, unknown>[],
): Omit<CheckResult, 'ms'> {
  const base = { name: check.name, kind: check.kind };
  switch (check.kind) {
    case 'neverNegative': {
      const offending = rows.filter((row) => Number(firstValue(row)) < 0);
      return offending.length === 0
        ? { ...base, status: 'ok' }
        : {
            ...base,
            status: 'violated',
            detail: `${offending.length} negative value(s)`,
            rows: offending.slice(0, MAX_ROWS),
          };
    }
    case 'unique': {
      const seen = new Map<string, number>();
      for (const row of rows) {
        const key = JSON.stringify(firstValue(row));
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      const duplicated = rows.filter((row) => (seen.get(JSON.stringify(firstValue(row))) ?? 0) > 1);
      return duplicated.length === 0
        ? { ...base, status: 'ok' }
        : {
            ...base,
            status: 'violated',
            detail: `${[...seen.values()].filter((n) => n > 1).length} value(s) appear more than once`,
            rows: duplicated.slice(0, MAX_ROWS),
          };
    }
    default: {
      const value = Number(firstValue(rows[0] ?? {}));
      const expected = check.expected as number;
      const ok =
        check.kind === 'atMostEffects'
          ? value <= expected
          : Number.isFinite(value) && value === expected;
      const word =
        check.kind === 'atMostEffects'
          ? 'at most'
          : check.kind === 'conserved'
            ? 'a total of'
            : 'exactly';
      return ok
        ? { ...base, status: 'ok' }
        : {
            ...base,
            status: 'violated',
            detail: `${String(firstValue(rows[0] ?? {}))} where ${word} ${expected} is required`,
            rows: rows.slice(0, 1),
          };
    }
  }
}

/** Prometheus text exposition of the latest results. */
export function prometheusText(
  results: readonly CheckResult[],
  state: { readonly rounds: number; readonly lastRunSeconds: number; readonly up: boolean },
): string {
  const label = (value: string) =>
    value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  const lines = [
    '# HELP raceguard_watch_up 1 when the last round reached the database',
    '# TYPE raceguard_watch_up gauge',
    `raceguard_watch_up ${state.up ? 1 : 0}`,
    '# HELP raceguard_watch_rounds_total Rounds of checks run',
    '# TYPE raceguard_watch_rounds_total counter',
    `raceguard_watch_rounds_total ${state.rounds}`,
    '# HELP raceguard_watch_last_run_timestamp_seconds When the last round ended',
    '# TYPE raceguard_watch_last_run_timestamp_seconds gauge',
    `raceguard_watch_last_run_timestamp_seconds ${state.lastRunSeconds}`,
    '# HELP raceguard_watch_violated 1 when the invariant was broken at the last check',
    '# TYPE raceguard_watch_violated gauge',
    ...results.map(
      (r) =>
        `raceguard_watch_violated{check="${label(r.name)}",kind="${r.kind}"} ${r.status === 'violated' ? 1 : 0}`,
    ),
    '# HELP raceguard_watch_error 1 when the check could not run at the last round',
    '# TYPE raceguard_watch_error gauge',
    ...results.map(
      (r) =>
        `raceguard_watch_error{check="${label(r.name)}",kind="${r.kind}"} ${r.status === 'error' ? 1 : 0}`,
    ),
    '# HELP raceguard_watch_check_duration_seconds Time the check took at the last round',
    '# TYPE raceguard_watch_check_duration_seconds gauge',
    ...results.map(
      (r) =>
        `raceguard_watch_check_duration_seconds{check="${label(r.name)}",kind="${r.kind}"} ${(r.ms / 1000).toFixed(6)}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/** Options of {@link watchLoop}. */
export interface WatchLoopOptions {
  readonly signal: AbortSignal;
  /** Called after each round. */
  readonly onRound: (results: readonly CheckResult[]) => void;
}

/**
 * Run rounds until `signal` aborts; after a round whose database was
 * unreachable, wait with capped exponential backoff (never longer than the
 * interval) instead of the full interval.
 */
export async function watchLoop(
  pool: WatchPool,
  config: WatchConfig,
  options: WatchLoopOptions,
): Promise<void> {
  let failures = 0;
  for (;;) {
    throwIfAborted(options.signal);
    const results = await runChecks(pool, config);
    options.onRound(results);
    const down = results.some((r) => r.detail?.startsWith('cannot reach the database') === true);
    failures = down ? failures + 1 : 0;
    const wait = down
      ? Math.min(config.intervalMs, 500 * 2 ** Math.min(failures - 1, 8))
      : config.intervalMs;
    await sleep(wait, options.signal);
  }
}
