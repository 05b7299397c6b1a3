/**
 * Scenario files for `raceguard run`: what to set up, which burst to
 * release, and which invariants must hold afterwards.
 */
import { RaceguardError, describeValue } from '../core/errors.js';
import type { ObservedResponse, Verdict } from './invariants.js';
import { MODELS, type ModelName } from '../check/models.js';

/** One request of the burst. */
export interface ScenarioRequest {
  /** @default 'GET' without a body, 'POST' with `json` or `body` */
  readonly method?: string;
  /** Path and query, relative to the target, e.g. `/orders?sku=1`. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as JSON (with `content-type: application/json`). */
  readonly json?: unknown;
  /** Sent as is; exclusive with `json`. */
  readonly body?: string;
}

/** A response of a helper HTTP call. */
export interface HttpReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly text: string;
  /** Parsed JSON body, or `undefined`. */
  readonly json: unknown;
}

/** What setup, checks and teardown get. */
export interface TrialContext {
  /** 0-based trial number. */
  readonly trial: number;
  /** The target's base URL. */
  readonly target: string;
  /** Call the target (not part of the burst). */
  readonly http: (request: ScenarioRequest) => Promise<HttpReply>;
  /** Query the database at `databaseUrl` (or DATABASE_URL); rows as objects. */
  readonly sql: (text: string, values?: readonly unknown[]) => Promise<Record<string, unknown>[]>;
  /** Scratch space shared by setup, burst and check of one trial. */
  readonly state: Record<string, unknown>;
}

/** What checks get: the trial context and every response of the burst. */
export interface CheckContext extends TrialContext {
  readonly responses: readonly ObservedResponse[];
}

/** The burst. */
export interface BurstSpec {
  /** Requests released together. */
  readonly count: number;
  /**
   * `'http1'`: one connection per request, last-byte synchronisation.
   * `'http2'`: streams on shared connections (h2c for http://, ALPN h2 for
   * https://), single-packet release of their final frames.
   * `'http1-pipeline'`: every request on one HTTP/1.1 connection, written
   * in one packet (pipelining: the single-packet release of HTTP/1.1), so
   * the server reads them all at once and a race window as narrow as one
   * turn of its event loop is exposed. Only for a server that handles
   * pipelined requests concurrently (Node's `http` does); one that
   * serializes them (many proxies do) hides every race.
   * @default 'http1'
   */
  readonly protocol?: 'http1' | 'http2' | 'http1-pipeline';
  /** The request, or a function of its index for per-request variation (distinct users). */
  readonly request: ScenarioRequest | ((index: number, context: TrialContext) => ScenarioRequest);
}

/**
 * How to read a burst as a history of operations on a model (see
 * `raceguard/check`), so that each trial is also checked for
 * linearizability: every request was invoked at the release, and returned
 * when its response arrived; a request that failed in transport is an
 * unknown outcome.
 */
export interface HistorySpec {
  /** The object the API stands for. */
  readonly model: ModelName;
  /**
   * Each response as an operation of the model: its input and its output;
   * `undefined` leaves the request out of the history.
   *
   * @example
   * ```ts
   * operation: (r) => ({ input: { op: 'add', amount: 1 }, output: null })
   * ```
   */
  readonly operation: (
    response: ObservedResponse,
  ) => { readonly input: unknown; readonly output: unknown } | undefined;
}

/** A scenario. */
export interface ScenarioDefinition {
  readonly name: string;
  /** Base URL of the API under test (overridden by `--target`). */
  readonly target: string;
  /** For https targets: accept a self-signed certificate (test servers only). @default false */
  readonly insecure?: boolean;
  /** Database the `sql` helper queries. @default process.env.DATABASE_URL */
  readonly databaseUrl?: string;
  /** Bursts to run, each with its own setup and checks. @default 10 */
  readonly trials?: number;
  /**
   * A burst in which no request got a 2xx proved nothing (a wrong path, a
   * refused connection, a missing fixture): by default such a trial is an
   * error. Set `true` for APIs where every request may legitimately fail;
   * it is then reported as a warning.
   * @default false
   */
  readonly allowNoSuccess?: boolean;
  /**
   * Delays to inject into the service's `delayPoint`s during each burst, ms
   * by point name (sent as the `x-raceguard-delay` header, which only a
   * service in test mode honours). `--delay` on the command line adds to them.
   * @default {}
   */
  readonly delays?: Readonly<Record<string, number>>;
  /**
   * Database-side delays for the whole run: the results of statements that
   * match `pattern` (a statement kind such as `SELECT`, a table, both as
   * `SELECT products`, or `/a regular expression/`) reach the service `ms`
   * late. Applied by `raceguard proxy`, so they need `raceguard run --proxy`;
   * `--db-delay` on the command line adds to them.
   * @default []
   */
  readonly dbDelays?: readonly { readonly pattern: string; readonly ms: number }[];
  /** Check each trial's burst for linearizability against a model, besides `check`. */
  readonly history?: HistorySpec;
  /** Create the record under test. Runs before every trial. */
  readonly setup?: (context: TrialContext) => Promise<void> | void;
  readonly burst: BurstSpec;
  /** The invariants, evaluated after every burst. */
  readonly check: (context: CheckContext) => Promise<readonly Verdict[]> | readonly Verdict[];
  /** Runs after every trial, even a failed one. */
  readonly teardown?: (context: TrialContext) => Promise<void> | void;
}

/** A scenario file is invalid; `field` points at the offending part. */
export class ScenarioError extends RaceguardError {
  /** The offending field, e.g. `scenario.burst.count`. */
  readonly field: string;

  constructor(field: string, expected: string, value: unknown, options: { cause?: unknown } = {}) {
    super(
      'RACEGUARD_SCENARIO_INVALID',
      `${field} must be ${expected}, received ${describeValue(value)}`,
      options,
    );
    this.field = field;
  }
}

function requireField(ok: boolean, field: string, expected: string, value: unknown): void {
  if (!ok) throw new ScenarioError(field, expected, value);
}

/**
 * Declare a scenario, fully typed; checks its shape at once, naming the
 * field that is wrong.
 *
 * @example
 * ```ts
 * export default defineScenario({
 *   name: 'last unit',
 *   target: 'http://127.0.0.1:3000',
 *   setup: ({ sql }) => sql('UPDATE products SET stock = 1 WHERE id = 1').then(() => undefined),
 *   burst: { count: 50, request: (i) => ({ path: '/buy', json: { productId: 1, user: `u${i}` } }) },
 *   check: async ({ responses, sql }) => {
 *     const [row] = await sql('SELECT stock FROM products WHERE id = 1');
 *     return [atMostWinners(responses, 1), neverNegative(Number(row?.stock), 'stock')];
 *   },
 * });
 * ```
 */
export function defineScenario(definition: ScenarioDefinition): ScenarioDefinition {
  validateScenario(definition, 'scenario');
  return definition;
}

/** Check a scenario's shape; `at` prefixes the field names in errors. */
/** Delays by point name: names like `after-read`, whole milliseconds up to 30 s. */
export function validateDelays(
  value: unknown,
  at: string,
): asserts value is Record<string, number> {
  requireField(
    typeof value === 'object' && value !== null && !Array.isArray(value),
    at,
    'an object { point: ms }',
    value,
  );
  for (const [point, ms] of Object.entries(value as Record<string, unknown>)) {
    requireField(
      /^[A-Za-z0-9_.:/-]{1,100}$/.test(point),
      `${at}`,
      'point names like "after-read"',
      point,
    );
    requireField(
      Number.isSafeInteger(ms) && (ms as number) >= 0 && (ms as number) <= 30_000,
      `${at}.${point}`,
      'whole milliseconds from 0 to 30000',
      ms,
    );
  }
}

export function validateScenario(value: unknown, at: string): asserts value is ScenarioDefinition {
  requireField(
    typeof value === 'object' && value !== null && !Array.isArray(value),
    at,
    'an object (defineScenario({...}))',
    value,
  );
  const s = value as Record<string, unknown>;
  requireField(
    typeof s.name === 'string' && s.name.length > 0,
    `${at}.name`,
    'a non-empty string',
    s.name,
  );
  requireField(
    typeof s.target === 'string' && isHttpUrl(s.target),
    `${at}.target`,
    'an http:// or https:// URL',
    s.target,
  );
  if (s.databaseUrl !== undefined) {
    requireField(
      typeof s.databaseUrl === 'string',
      `${at}.databaseUrl`,
      'a connection string',
      s.databaseUrl,
    );
  }
  if (s.trials !== undefined) {
    requireField(
      Number.isSafeInteger(s.trials) && (s.trials as number) >= 1,
      `${at}.trials`,
      'a positive integer',
      s.trials,
    );
  }
  if (s.delays !== undefined) validateDelays(s.delays, `${at}.delays`);
  if (s.dbDelays !== undefined) {
    requireField(
      Array.isArray(s.dbDelays),
      `${at}.dbDelays`,
      'a list of { pattern, ms }',
      s.dbDelays,
    );
    (s.dbDelays as unknown[]).forEach((delay, i) => {
      const d = delay as { pattern?: unknown; ms?: unknown } | null;
      requireField(
        typeof d?.pattern === 'string' &&
          d.pattern.trim() !== '' &&
          Number.isSafeInteger(d.ms) &&
          (d.ms as number) >= 0,
        `${at}.dbDelays[${i}]`,
        '{ pattern: a non-empty string, ms: an integer >= 0 }',
        delay,
      );
    });
  }
  if (s.history !== undefined) {
    requireField(
      typeof s.history === 'object' && s.history !== null,
      `${at}.history`,
      'an object { model, operation }',
      s.history,
    );
    const history: Record<string, unknown> = s.history as Record<string, unknown>;
    requireField(
      typeof history.model === 'string' && history.model in MODELS,
      `${at}.history.model`,
      `one of ${Object.keys(MODELS).join(', ')}`,
      history.model,
    );
    requireField(
      typeof history.operation === 'function',
      `${at}.history.operation`,
      'a function',
      history.operation,
    );
  }
  for (const hook of ['setup', 'teardown'] as const) {
    if (s[hook] !== undefined)
      requireField(typeof s[hook] === 'function', `${at}.${hook}`, 'a function', s[hook]);
  }
  requireField(
    typeof s.check === 'function',
    `${at}.check`,
    'a function returning verdicts',
    s.check,
  );
  requireField(
    typeof s.burst === 'object' && s.burst !== null,
    `${at}.burst`,
    'an object { count, request }',
    s.burst,
  );
  const burst = s.burst as Record<string, unknown>;
  requireField(
    Number.isSafeInteger(burst.count) &&
      (burst.count as number) >= 1 &&
      (burst.count as number) <= 10_000,
    `${at}.burst.count`,
    'an integer from 1 to 10000',
    burst.count,
  );
  if (burst.protocol !== undefined) {
    requireField(
      burst.protocol === 'http1' ||
        burst.protocol === 'http2' ||
        burst.protocol === 'http1-pipeline',
      `${at}.burst.protocol`,
      '"http1", "http2" or "http1-pipeline"',
      burst.protocol,
    );
  }
  for (const flag of ['insecure', 'allowNoSuccess'] as const) {
    if (s[flag] !== undefined)
      requireField(typeof s[flag] === 'boolean', `${at}.${flag}`, 'a boolean', s[flag]);
  }
  if (typeof burst.request !== 'function') validateRequest(burst.request, `${at}.burst.request`);
}

/** Check one request template. */
export function validateRequest(value: unknown, at: string): asserts value is ScenarioRequest {
  requireField(
    typeof value === 'object' && value !== null && !Array.isArray(value),
    at,
    'a request { method, path, json } or a function of the index',
    value,
  );
  const r = value as Record<string, unknown>;
  requireField(
    typeof r.path === 'string' && /^\/[!-~]*$/.test(r.path),
    `${at}.path`,
    'a path starting with "/", visible ASCII without spaces',
    r.path,
  );
  if (r.method !== undefined) {
    requireField(
      typeof r.method === 'string' && /^[A-Z]+$/.test(r.method),
      `${at}.method`,
      'an upper-case HTTP method',
      r.method,
    );
  }
  requireField(
    !(r.json !== undefined && r.body !== undefined),
    at,
    'either json or body, not both',
    value,
  );
  if (r.body !== undefined)
    requireField(typeof r.body === 'string', `${at}.body`, 'a string', r.body);
  if (r.headers !== undefined) {
    requireField(
      typeof r.headers === 'object' &&
        r.headers !== null &&
        Object.values(r.headers).every((v) => typeof v === 'string'),
      `${at}.headers`,
      'an object of string header values',
      r.headers,
    );
    for (const [name, value] of Object.entries(r.headers as Record<string, string>)) {
      requireField(
        /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name),
        `${at}.headers`,
        'HTTP token names',
        name,
      );
      requireField(
        /^(?:[!-~](?:[\t -~]*[!-~])?)?$/.test(value),
        `${at}.headers.${name}`,
        'visible ASCII, space or tab (no line breaks, no other characters)',
        value,
      );
    }
  }
}

/** Whether `value` parses as an http:// or https:// URL. */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/**
 * What a scenario's `check` returned, validated: at least one verdict, each
 * `{ invariant, ok, detail }`, names made unique (a repeated name gets
 * ` #2`, ` #3`). Throws an `Error` saying what was returned instead (the
 * runner reports it as an errored trial, naming the phase).
 */
export function validateVerdicts(value: unknown): Verdict[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new Error(
      `returned ${Array.isArray(value) ? 'no verdicts (an empty array)' : describeValue(value)}: a check must return the invariants it evaluated, e.g. [atMostWinners(responses, 1)]`,
    );
  }
  value.forEach((v: unknown, i) => {
    const verdict = v as Partial<Verdict> | null;
    if (
      typeof verdict !== 'object' ||
      verdict === null ||
      typeof verdict.invariant !== 'string' ||
      typeof verdict.ok !== 'boolean' ||
      typeof verdict.detail !== 'string'
    ) {
      throw new Error(
        `verdict ${i + 1} is ${describeValue(v)}, not { invariant: string, ok: boolean, detail: string }`,
      );
    }
  });
  // Two checks of one kind without names (two neverNegative, say) would share
  // a name and merge into one invariant in every report: the later ones get
  // "#2", "#3", in the order the check returned them (the same every trial).
  const seen = new Map<string, number>();
  return (value as Verdict[]).map((verdict) => {
    const n = (seen.get(verdict.invariant) ?? 0) + 1;
    seen.set(verdict.invariant, n);
    return n === 1 ? verdict : { ...verdict, invariant: `${verdict.invariant} #${n}` };
  });
}
