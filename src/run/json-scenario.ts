/**
 * Scenarios written as JSON, for the simple cases: requests and SQL for
 * setup, one request template for the burst (with `{i}` and `{trial}`
 * substituted), and built-in invariants over the responses and over
 * values read by SQL or HTTP.
 */
import { z } from 'zod';
import {
  atMostWinners,
  exactlyEffects,
  neverNegative,
  unique,
  type Verdict,
} from './invariants.js';
import {
  ScenarioError,
  type ScenarioDefinition,
  type ScenarioRequest,
  type TrialContext,
} from './scenario.js';

const Request = z
  .object({
    method: z
      .string()
      .regex(/^[A-Z]+$/, 'an upper-case HTTP method')
      .optional(),
    path: z.string().startsWith('/', 'a path starting with "/"'),
    headers: z.record(z.string(), z.string()).optional(),
    json: z.unknown().optional(),
    body: z.string().optional(),
  })
  .strict();

const Sql = z.object({ sql: z.string().min(1), values: z.array(z.unknown()).optional() }).strict();
const HttpValue = z.object({ http: z.string().startsWith('/'), field: z.string().min(1) }).strict();
const Source = z.union([Sql, HttpValue]);
const Step = z.union([Sql, z.object({ request: Request }).strict()]);

const Check = z.union([
  z
    .object({
      atMostWinners: z.number().int().min(0),
      status: z.array(z.number().int()).min(1).optional(),
    })
    .strict(),
  z.object({ neverNegative: Source, name: z.string().min(1).optional() }).strict(),
  z
    .object({ exactly: z.number().int().min(0), of: Source, name: z.string().min(1).optional() })
    .strict(),
  z.object({ unique: Source, name: z.string().min(1).optional() }).strict(),
]);

const JsonScenario = z
  .object({
    name: z.string().min(1),
    target: z.url({ protocol: /^https?$/ }),
    databaseUrl: z.string().min(1).optional(),
    trials: z.number().int().min(1).optional(),
    setup: z.array(Step).optional(),
    insecure: z.boolean().optional(),
    burst: z
      .object({
        count: z.number().int().min(1).max(10_000),
        protocol: z.enum(['http1', 'http2']).optional(),
        request: Request,
      })
      .strict(),
    check: z.array(Check).min(1),
    teardown: z.array(Step).optional(),
  })
  .strict();

type Source = z.infer<typeof Source>;
type Step = z.infer<typeof Step>;

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
  if (value === undefined || value === null || !Number.isFinite(n)) {
    throw new Error(`${what}: expected a number, read ${JSON.stringify(value)}`);
  }
  return n;
}

async function runSteps(steps: readonly Step[], context: TrialContext): Promise<void> {
  const vars = { trial: String(context.trial), i: '' };
  for (const step of steps) {
    if ('sql' in step) await context.sql(step.sql, step.values ?? []);
    else {
      const reply = await context.http(substitute(step.request, vars) as ScenarioRequest);
      if (reply.status >= 400) {
        throw new Error(
          `setup request ${step.request.method ?? 'POST'} ${step.request.path} answered ${reply.status}: ${reply.text.slice(0, 200)}`,
        );
      }
    }
  }
}

/**
 * Turn a parsed JSON scenario into a definition. Throws
 * {@link ScenarioError} naming the first invalid field.
 *
 * @example
 * ```ts
 * const scenario = scenarioFromJson(JSON.parse(await readFile('last-unit.json', 'utf8')), 'last-unit.json');
 * ```
 */
export function scenarioFromJson(value: unknown, file = 'scenario'): ScenarioDefinition {
  const parsed = JsonScenario.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = [file, ...(issue?.path ?? []).map(String)].join('.');
    throw new ScenarioError(path, issue?.message ?? 'valid', undefined);
  }
  const spec = parsed.data;
  return {
    name: spec.name,
    target: spec.target,
    ...(spec.databaseUrl !== undefined && { databaseUrl: spec.databaseUrl }),
    ...(spec.trials !== undefined && { trials: spec.trials }),
    ...(spec.insecure !== undefined && { insecure: spec.insecure }),
    setup: (context) => runSteps(spec.setup ?? [], context),
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
      for (const check of spec.check) {
        if ('atMostWinners' in check) {
          const statuses = check.status;
          verdicts.push(
            atMostWinners(context.responses, check.atMostWinners, (r) =>
              statuses === undefined
                ? r.status >= 200 && r.status < 300
                : statuses.includes(r.status),
            ),
          );
        } else if ('neverNegative' in check) {
          const name = check.name ?? 'value';
          verdicts.push(neverNegative(await readNumber(check.neverNegative, context, name), name));
        } else if ('exactly' in check) {
          const name = check.name ?? 'effects';
          verdicts.push(
            exactlyEffects(await readNumber(check.of, context, name), check.exactly, name),
          );
        } else {
          verdicts.push(unique(await readValues(check.unique, context), check.name ?? 'values'));
        }
      }
      return verdicts;
    },
  };
}
