/**
 * Scenarios written as JSON or YAML, for the simple cases: requests and SQL
 * for setup, one request template for the burst (with `{i}` and `{trial}`
 * substituted), and the built-in invariants over the responses and over
 * values read by SQL or HTTP, before and after the burst.
 */
import { issueError, namedVariant } from './config-issues.js';
import { z } from 'zod';
import {
  atMostEffects,
  atMostWinners,
  conservedSum,
  exactlyEffects,
  matchesSuccesses,
  neverNegative,
  unique,
  winnersMatch,
  type ObservedResponse,
  type Verdict,
  ScenarioError,
  type ScenarioDefinition,
  type ScenarioRequest,
  type TrialContext,
} from 'raceguard/run';

const Request = z
  .object({
    method: z
      .string()
      .regex(/^[A-Z]+$/, 'an upper-case HTTP method')
      .optional(),
    path: z.string().regex(/^\/[!-~]*$/, 'a path starting with "/", visible ASCII without spaces'),
    headers: z.record(z.string(), z.string()).optional(),
    json: z.unknown().optional(),
    body: z.string().optional(),
  })
  .strict();

const Sql = z.object({ sql: z.string().min(1), values: z.array(z.unknown()).optional() }).strict();
const HttpValue = z
  .object({
    http: z.string().startsWith('/', 'a path starting with "/"'),
    field: z.string().min(1),
  })
  .strict();
const Source = z.union([Sql, HttpValue]);
const Step = z.union([Sql, z.object({ request: Request }).strict()]);

const Name = z.string().min(1).optional();
const Statuses = z.array(z.number().int().min(100).max(599)).min(1).optional();

/** Every check a JSON/YAML scenario can use, by the key that names it. */
const CHECKS = {
  atMostWinners: z.object({ atMostWinners: z.number().int().min(0), status: Statuses }).strict(),
  neverNegative: z.object({ neverNegative: Source, name: Name }).strict(),
  exactly: z.object({ exactly: z.number().int().min(0), of: Source, name: Name }).strict(),
  atMostEffects: z
    .object({ atMostEffects: z.number().int().min(0), of: Source, name: Name })
    .strict(),
  unique: z.object({ unique: Source, name: Name }).strict(),
  conserved: z.object({ conserved: Source, name: Name }).strict(),
  matchesSuccesses: z
    .object({
      matchesSuccesses: Source,
      perSuccess: z.number().finite().optional(),
      status: Statuses,
      name: Name,
    })
    .strict(),
  winnersMatch: z
    .object({ winnersMatch: Source, by: z.string().min(1), status: Statuses, name: Name })
    .strict(),
} as const;
type CheckName = keyof typeof CHECKS;
const CHECK_NAMES = Object.keys(CHECKS) as CheckName[];
type Check = { [K in CheckName]: z.infer<(typeof CHECKS)[K]> }[CheckName];

const JsonScenario = z
  .object({
    name: z.string().min(1),
    target: z.url({ protocol: /^https?$/, message: 'an http:// or https:// URL' }),
    databaseUrl: z.string().min(1).optional(),
    trials: z.number().int().min(1).optional(),
    allowNoSuccess: z.boolean().optional(),
    delays: z.record(z.string(), z.number().int().min(0).max(30_000)).optional(),
    dbDelays: z
      .array(
        z.strictObject({ pattern: z.string().min(1), ms: z.number().int().min(0).max(600_000) }),
      )
      .optional(),
    setup: z.array(Step).optional(),
    insecure: z.boolean().optional(),
    burst: z
      .object({
        count: z.number().int().min(1).max(10_000),
        protocol: z.enum(['http1', 'http2', 'http1-pipeline']).optional(),
        request: Request,
      })
      .strict(),
    check: z.array(z.unknown()).min(1, 'a list of at least one check'),
    teardown: z.array(Step).optional(),
  })
  .strict();

type Source = z.infer<typeof Source>;
type Step = z.infer<typeof Step>;

/** A field path for people: `burst.count`, `check #2.status` (list items numbered from 1). */
function fieldPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const [i, part] of path.entries()) {
    if (typeof part === 'number') out += ` #${part + 1}`;
    else out += `${i === 0 && out === prefix ? ': ' : '.'}${String(part)}`;
  }
  return out;
}

/**
 * The first issue as a {@link ScenarioError}: where, what was expected, what
 * was received. `input` is what was parsed; `path` is where it sits in the file.
 */
function firstIssue(
  error: z.ZodError,
  input: unknown,
  prefix: string,
  path: readonly PropertyKey[] = [],
): ScenarioError {
  return issueError(error, input, path, (at) => fieldPath(prefix, at));
}

function parseCheck(value: unknown, file: string, index: number): Check {
  const path = ['check', index];
  const name = namedVariant(value, CHECK_NAMES, path, (at) => fieldPath(file, at));
  const parsed = CHECKS[name].safeParse(value);
  if (!parsed.success) throw firstIssue(parsed.error, value, file, path);
  return parsed.data;
}

function substitute(value: unknown, vars: Record<string, string>): unknown {
  if (typeof value === 'string')
    return value.replace(/\{(i|trial)\}/g, (_, name: string) => vars[name] ?? '');
  if (Array.isArray(value)) return value.map((v) => substitute(v, vars));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, vars)]));
  }
  return value;
}

function pick(value: unknown, field: string): unknown {
  let current = value;
  for (const part of field.split('.')) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

async function readValues(source: Source, context: TrialContext): Promise<unknown[]> {
  if ('sql' in source) {
    const rows = await context.sql(source.sql, source.values ?? []);
    return rows.map((row) => Object.values(row)[0]);
  }
  const reply = await context.http({ method: 'GET', path: source.http });
  const found = pick(reply.json, source.field);
  return Array.isArray(found) ? (found as unknown[]) : [found];
}

async function readNumber(source: Source, context: TrialContext, what: string): Promise<number> {
  const [value] = await readValues(source, context);
  const n = Number(value);
  if (value === undefined || value === null || typeof value === 'boolean' || !Number.isFinite(n)) {
    const from = 'sql' in source ? `"${source.sql}"` : `GET ${source.http} .${source.field}`;
    throw new Error(`${what}: expected a number from ${from}, read ${JSON.stringify(value)}`);
  }
  return n;
}

async function runSteps(steps: readonly Step[], context: TrialContext): Promise<void> {
  const vars = { trial: String(context.trial), i: '' };
  for (const step of steps) {
    if ('sql' in step) await context.sql(step.sql, step.values ?? []);
    else {
      const request = substitute(step.request, vars) as ScenarioRequest;
      const reply = await context.http(request);
      if (reply.status >= 400) {
        throw new Error(
          `request ${request.method ?? (request.json === undefined && request.body === undefined ? 'GET' : 'POST')} ${request.path} answered ${reply.status}: ${reply.text.slice(0, 200)}`,
        );
      }
    }
  }
}

const winnerBy = (statuses: readonly number[] | undefined) => (r: ObservedResponse) =>
  statuses === undefined ? r.status >= 200 && r.status < 300 : statuses.includes(r.status);

/** Values read before the burst, per trial (its `state`), for checks that compare with them. */
const valuesBefore = new WeakMap<object, Map<Check, number>>();

/**
 * Turn a parsed JSON or YAML scenario into a definition. Throws
 * {@link ScenarioError} naming the first invalid field, what it must be and
 * what it was.
 *
 * Checks: `atMostWinners`, `neverNegative`, `exactly` (+ `of`),
 * `atMostEffects` (+ `of`), `unique`, `conserved` (the value read before the
 * burst equals the one after), `matchesSuccesses` (after = before +
 * `perSuccess` × successes; `perSuccess` defaults to 1), `winnersMatch`
 * (the values read are exactly the `by` field, a dotted path into each
 * winning response such as `request.json.buyer` or `json.orderId`).
 *
 * @example
 * ```ts
 * const scenario = scenarioFromJson(JSON.parse(await readFile('last-unit.json', 'utf8')), 'last-unit.json');
 * ```
 */
export function scenarioFromJson(value: unknown, file = 'scenario'): ScenarioDefinition {
  const parsed = JsonScenario.safeParse(value);
  if (!parsed.success) throw firstIssue(parsed.error, value, file);
  const spec = parsed.data;
  const checks = spec.check.map((item, i) => parseCheck(item, file, i));
  const before = checks.filter(
    (c): c is Extract<Check, { conserved: Source } | { matchesSuccesses: Source }> =>
      'conserved' in c || 'matchesSuccesses' in c,
  );
  return {
    name: spec.name,
    target: spec.target,
    ...(spec.databaseUrl !== undefined && { databaseUrl: spec.databaseUrl }),
    ...(spec.trials !== undefined && { trials: spec.trials }),
    ...(spec.insecure !== undefined && { insecure: spec.insecure }),
    ...(spec.allowNoSuccess !== undefined && { allowNoSuccess: spec.allowNoSuccess }),
    ...(spec.delays !== undefined && { delays: spec.delays }),
    ...(spec.dbDelays !== undefined && { dbDelays: spec.dbDelays }),
    setup: async (context) => {
      await runSteps(spec.setup ?? [], context);
      const values = new Map<Check, number>();
      for (const check of before) {
        const source = 'conserved' in check ? check.conserved : check.matchesSuccesses;
        values.set(
          check,
          await readNumber(source, context, `${check.name ?? 'value'} before the burst`),
        );
      }
      valuesBefore.set(context.state, values);
    },
    teardown: (context) => runSteps(spec.teardown ?? [], context),
    burst: {
      count: spec.burst.count,
      ...(spec.burst.protocol !== undefined && { protocol: spec.burst.protocol }),
      request: (i, context) =>
        substitute(spec.burst.request, {
          i: String(i),
          trial: String(context.trial),
        }) as ScenarioRequest,
    },
    check: async (context) => {
      const verdicts: Verdict[] = [];
      const readBefore = valuesBefore.get(context.state) ?? new Map<Check, number>();
      for (const check of checks) {
        if ('atMostWinners' in check) {
          verdicts.push(
            atMostWinners(context.responses, check.atMostWinners, winnerBy(check.status)),
          );
        } else if ('neverNegative' in check) {
          const name = check.name ?? 'value';
          verdicts.push(neverNegative(await readNumber(check.neverNegative, context, name), name));
        } else if ('exactly' in check) {
          const name = check.name ?? 'effects';
          verdicts.push(
            exactlyEffects(await readNumber(check.of, context, name), check.exactly, name),
          );
        } else if ('atMostEffects' in check) {
          const name = check.name ?? 'effects';
          verdicts.push(
            atMostEffects(await readNumber(check.of, context, name), check.atMostEffects, name),
          );
        } else if ('unique' in check) {
          verdicts.push(unique(await readValues(check.unique, context), check.name ?? 'values'));
        } else if ('conserved' in check) {
          const name = check.name ?? 'sum';
          verdicts.push(
            conservedSum(
              readBefore.get(check) ?? Number.NaN,
              await readNumber(check.conserved, context, name),
              name,
            ),
          );
        } else if ('matchesSuccesses' in check) {
          const name = check.name ?? 'state';
          const start = readBefore.get(check) ?? Number.NaN;
          const perSuccess = check.perSuccess ?? 1;
          verdicts.push(
            matchesSuccesses(context.responses, {
              actual: await readNumber(check.matchesSuccesses, context, name),
              expected: (successes) => start + perSuccess * successes,
              what: name,
              isSuccess: winnerBy(check.status),
            }),
          );
        } else {
          const by = check.by;
          verdicts.push(
            winnersMatch(context.responses, await readValues(check.winnersMatch, context), {
              identify: (r) => pick(r, by),
              isWinner: winnerBy(check.status),
              what: check.name ?? 'state',
            }),
          );
        }
      }
      return verdicts;
    },
  };
}
