import { AsyncLocalStorage } from 'node:async_hooks';
import { sleep } from '../core/abort.js';
import { InvalidArgumentError } from '../core/errors.js';
import { assertAbortSignal, assertKnownOptions, assertPlainObject } from '../core/validate.js';

/** The request header that carries per-request delays in test mode: `after-read=50,before-commit=20`. */
export const DELAY_HEADER = 'x-raceguard-delay';

/** The environment variable that turns test mode on: `on`, or fixed delays `after-read=50,...`. */
export const DELAY_ENV = 'RACEGUARD_DELAYS';

/** Options of {@link configureDelays}. */
export interface DelayOptions {
  /** Test mode. Never on by default; in production leave it off (or unset). */
  readonly enabled: boolean;
  /**
   * Delays applied to every request (a request's header overrides them per point), ms by point name.
   * @default {}
   */
  readonly delays?: Readonly<Record<string, number>>;
  /**
   * The longest delay accepted, ms: a longer one in a header or here is refused.
   * @default 30000
   */
  readonly maxDelayMs?: number;
}

interface Settings {
  readonly enabled: boolean;
  readonly delays: ReadonlyMap<string, number>;
  readonly maxDelayMs: number;
}

const POINT_NAME = /^[A-Za-z0-9_.:/-]{1,100}$/;
const RESOLVED = Promise.resolve();
/** One request's delays, and the points of them its handler reached. */
interface RequestScope {
  readonly delays: ReadonlyMap<string, number>;
  readonly reached: Set<string>;
}
const perRequest = new AsyncLocalStorage<RequestScope>();

/**
 * The response header through which the HTTP adapters say which of the
 * request's delay points its handler reached (comma-separated, empty when
 * none), so that `raceguard run --delay` can tell a widened window from a
 * point no request passed.
 */
export const DELAY_REACHED_HEADER = 'x-raceguard-delay-reached';
let settings: Settings | undefined;

function settingsFromEnvironment(): Settings {
  const value = process.env[DELAY_ENV]?.trim();
  if (value === undefined || value === '' || value === 'off' || value === '0') {
    return { enabled: false, delays: new Map(), maxDelayMs: 30_000 };
  }
  const delays =
    value === 'on' || value === '1'
      ? new Map<string, number>()
      : parseDelays(value, 30_000, DELAY_ENV);
  return { enabled: true, delays, maxDelayMs: 30_000 };
}

function current(): Settings {
  return (settings ??= settingsFromEnvironment());
}

/**
 * Reads a delay list: `point=ms` pairs separated by commas (`after-read=50,before-commit=20`).
 * Throws {@link InvalidArgumentError} naming the bad part.
 *
 * @example
 * ```ts
 * parseDelays('after-read=50,before-commit=20'); // Map { 'after-read' => 50, 'before-commit' => 20 }
 * ```
 */
export function parseDelays(
  text: string,
  maxDelayMs = 30_000,
  argument = 'delays',
): Map<string, number> {
  if (typeof text !== 'string')
    throw new InvalidArgumentError(argument, 'a string like "after-read=50"', text);
  const delays = new Map<string, number>();
  for (const part of text.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    const match = /^([^=\s]+)\s*=\s*(\d+)$/.exec(trimmed);
    if (match === null || !POINT_NAME.test(match[1]!)) {
      throw new InvalidArgumentError(argument, '"point=ms" pairs separated by commas', trimmed);
    }
    const ms = Number(match[2]);
    if (ms > maxDelayMs)
      throw new InvalidArgumentError(argument, `delays of at most ${maxDelayMs} ms`, trimmed);
    delays.set(match[1]!, ms);
  }
  return delays;
}

/**
 * Writes a delay list in the form {@link parseDelays} reads.
 *
 * @example
 * ```ts
 * formatDelays({ 'after-read': 50 }); // 'after-read=50'
 * ```
 */
export function formatDelays(delays: Readonly<Record<string, number>>): string {
  return Object.entries(delays)
    .map(([point, ms]) => `${point}=${ms}`)
    .join(',');
}

/**
 * Turns test mode on or off for this process, overriding `RACEGUARD_DELAYS`.
 *
 * @example
 * ```ts
 * configureDelays({ enabled: process.env.NODE_ENV === 'test', delays: { 'after-read': 20 } });
 * ```
 */
export function configureDelays(options: DelayOptions): void {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['enabled', 'delays', 'maxDelayMs']));
  if (typeof options.enabled !== 'boolean') {
    throw new InvalidArgumentError('options.enabled', 'a boolean', options.enabled);
  }
  const maxDelayMs = options.maxDelayMs ?? 30_000;
  if (!Number.isSafeInteger(maxDelayMs) || maxDelayMs < 0) {
    throw new InvalidArgumentError('options.maxDelayMs', 'a non-negative safe integer', maxDelayMs);
  }
  const delays = new Map<string, number>();
  if (options.delays !== undefined) {
    assertPlainObject('options.delays', options.delays);
    for (const [point, ms] of Object.entries(options.delays)) {
      if (!POINT_NAME.test(point))
        throw new InvalidArgumentError('options.delays', 'point names like "after-read"', point);
      if (!Number.isSafeInteger(ms) || ms < 0 || ms > maxDelayMs) {
        throw new InvalidArgumentError(
          `options.delays.${point}`,
          `an integer from 0 to ${maxDelayMs} ms`,
          ms,
        );
      }
      delays.set(point, ms);
    }
  }
  settings = { enabled: options.enabled, delays, maxDelayMs };
}

/**
 * Goes back to what `RACEGUARD_DELAYS` says (read again on next use).
 *
 * @example
 * ```ts
 * afterEach(() => resetDelays());
 * ```
 */
export function resetDelays(): void {
  settings = undefined;
}

/**
 * True when test mode is on.
 *
 * @example
 * ```ts
 * if (delaysEnabled()) log.warn('race windows can be widened by request headers');
 * ```
 */
export function delaysEnabled(): boolean {
  return current().enabled;
}

/**
 * Runs `fn` with the delays of one request (the value of its
 * {@link DELAY_HEADER}). Outside test mode the header is ignored and `fn` just
 * runs. A malformed header throws {@link InvalidArgumentError} (the HTTP
 * adapters answer 400).
 *
 * @example
 * ```ts
 * server.on('request', (req, res) => withRequestDelays(req.headers['x-raceguard-delay'] as string | undefined, () => handle(req, res)));
 * ```
 */
export function withRequestDelays<T>(header: string | undefined, fn: () => T): T {
  const scope = openDelayScope(header);
  return scope === undefined ? fn() : runInDelayScope(scope, fn);
}

/**
 * @internal The scope of one request's delays (undefined outside test mode
 * or without a header); a malformed header throws `InvalidArgumentError`.
 */
export function openDelayScope(header: string | undefined): RequestScope | undefined {
  const mode = current();
  if (!mode.enabled || header === undefined || header === '') return undefined;
  return { delays: parseDelays(header, mode.maxDelayMs, DELAY_HEADER), reached: new Set() };
}

/** @internal */
export function runInDelayScope<T>(scope: RequestScope, fn: () => T): T {
  return perRequest.run(scope, fn);
}

/** @internal The value of {@link DELAY_REACHED_HEADER} for a scope. */
export function reachedValue(scope: RequestScope): string {
  return [...scope.reached].join(',');
}

/**
 * The delay points of the current request (see {@link withRequestDelays})
 * its handler has reached so far, or `undefined` outside a request with
 * delays. A server that uses `withRequestDelays` directly sends them in
 * {@link DELAY_REACHED_HEADER}, as the HTTP adapters do.
 *
 * @example
 * ```ts
 * const reached = reachedDelayPoints();
 * if (reached !== undefined) res.setHeader('x-raceguard-delay-reached', reached.join(','));
 * ```
 */
export function reachedDelayPoints(): readonly string[] | undefined {
  const scope = perRequest.getStore();
  return scope === undefined ? undefined : [...scope.reached];
}

/**
 * A named window in your code that tests can widen. A no-op unless test
 * mode is on (`configureDelays({ enabled: true })` or `RACEGUARD_DELAYS`);
 * then it pauses for the delay the request's `x-raceguard-delay` header (or
 * the configured delays) give this point, so a race window microseconds wide
 * becomes as wide as the test wants. Honours `signal` while it waits.
 *
 * @example
 * ```ts
 * const { rows } = await pool.query('SELECT stock FROM items WHERE id = $1', [id]);
 * await delayPoint('after-stock-read'); // `raceguard run --delay after-stock-read=50`
 * if (rows[0].stock > 0) await pool.query('UPDATE items SET stock = stock - 1 WHERE id = $1', [id]);
 * ```
 */
export function delayPoint(
  name: string,
  options?: { readonly signal?: AbortSignal },
): Promise<void> {
  const mode = current();
  if (!mode.enabled) return RESOLVED;
  if (typeof name !== 'string' || !POINT_NAME.test(name)) {
    return Promise.reject(new InvalidArgumentError('name', 'a point name like "after-read"', name));
  }
  const scope = perRequest.getStore();
  if (scope?.delays.has(name) === true) scope.reached.add(name);
  const ms = scope?.delays.get(name) ?? mode.delays.get(name) ?? 0;
  if (ms === 0) return RESOLVED;
  assertAbortSignal('options.signal', options?.signal);
  return sleep(ms, options?.signal);
}
