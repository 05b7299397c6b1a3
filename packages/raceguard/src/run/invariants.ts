/**
 * Invariant helpers for scenario checks. Each returns a {@link Verdict}
 * whose `detail` explains a violation in HTTP terms: which requests, what
 * they were told, what the data says.
 */
import { RaceguardError, describeValue } from '../core/errors.js';

/** A response of the burst, as checks see it. */
export interface ObservedResponse {
  /** Position in the burst (0-based; reported 1-based as "request N"). */
  readonly index: number;
  /** HTTP status; 0 when the request failed at the transport level. */
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The body as text. */
  readonly text: string;
  /** The body parsed as JSON, or `undefined` when it is not JSON. */
  readonly json: unknown;
  /** The request that got this response. */
  readonly request: SentRequest;
}

/** A request of the burst as it was sent. */
export interface SentRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON value sent, when the request was written with `json`. */
  readonly json?: unknown;
  readonly body?: string;
}

/** The outcome of one invariant in one trial. */
export interface Verdict {
  /** A stable name for reports, e.g. `at-most-1-winners`. */
  readonly invariant: string;
  readonly ok: boolean;
  /** Why it failed (or what held), in one sentence. */
  readonly detail: string;
}

const isSuccess = (r: ObservedResponse): boolean => r.status >= 200 && r.status < 300;

/**
 * A numeric invariant was given something that is not a number (`NaN` from
 * `Number(row?.stock)` when the query returned no row or another column).
 * It makes the trial an error, never a race: nothing was measured.
 *
 * @example
 * ```ts
 * neverNegative(Number(undefined), 'stock'); // throws: stock must be a finite number, received NaN
 * ```
 */
export class InvariantInputError extends RaceguardError {
  constructor(helper: string, what: string, value: unknown) {
    super(
      'RACEGUARD_INVARIANT_INPUT',
      `${helper}: ${what} must be a finite number, received ${describeValue(value)}${
        typeof value === 'number' && Number.isNaN(value)
          ? ' (did the query return no row, or a column of another name?)'
          : ''
      }`,
    );
  }
}

function numeric(helper: string, what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new InvariantInputError(helper, what, value);
  return value;
}

function describeRequests(responses: readonly ObservedResponse[], limit = 3): string {
  const shown = responses.slice(0, limit).map((r) => {
    const text = r.text.replace(/\s+/g, ' ');
    const snippet = text.length > 40 ? `${text.slice(0, 37)}...` : text;
    return `request ${r.index + 1} got ${r.status === 0 ? 'no response' : r.status}${snippet === '' ? '' : ` ${snippet}`}`;
  });
  const more = responses.length > limit ? ` and ${responses.length - limit} more` : '';
  return shown.join(', ') + more;
}

/**
 * At most `k` requests may win (by default: get a 2xx). The classic
 * oversell: two buyers both told "purchased" for the last unit.
 *
 * @example
 * ```ts
 * atMostWinners(responses, 1, (r) => r.status === 200);
 * ```
 */
export function atMostWinners(
  responses: readonly ObservedResponse[],
  k: number,
  isWinner: (response: ObservedResponse) => boolean = isSuccess,
): Verdict {
  const winners = responses.filter(isWinner);
  return {
    invariant: `at-most-${k}-winners`,
    ok: winners.length <= k,
    detail:
      winners.length <= k
        ? `${winners.length} winner(s), at most ${k} allowed`
        : `${winners.length} requests won where at most ${k} may: ${describeRequests(winners)}`,
  };
}

/**
 * Exactly `expected` effects exist (rows, charges, emails), read from the
 * final state.
 *
 * @example
 * ```ts
 * exactlyEffects(Number(row?.charges), 1, 'charges');
 * ```
 */
export function exactlyEffects(actual: number, expected: number, what = 'effects'): Verdict {
  numeric('exactlyEffects', what, actual);
  numeric('exactlyEffects', `expected ${what}`, expected);
  return {
    invariant: `exactly-${what}`,
    ok: actual === expected,
    detail:
      actual === expected
        ? `${actual} ${what}, as expected`
        : `${actual} ${what} where exactly ${expected} should exist`,
  };
}

/**
 * At most `max` effects exist (coupon redemptions under a cap of 100,
 * bookings of one seat), read from the final state.
 *
 * @example
 * ```ts
 * atMostEffects(Number(row?.redemptions), 100, 'redemptions');
 * ```
 */
export function atMostEffects(actual: number, max: number, what = 'effects'): Verdict {
  numeric('atMostEffects', what, actual);
  numeric('atMostEffects', `maximum ${what}`, max);
  return {
    invariant: `at-most-${what}`,
    ok: actual <= max,
    detail:
      actual <= max
        ? `${actual} ${what}, at most ${max} allowed`
        : `${actual} ${what} where at most ${max} may exist: ${actual - max} too many`,
  };
}

/**
 * A quantity (stock, balance, seats left) never goes below zero.
 *
 * @example
 * ```ts
 * neverNegative(Number(product?.stock), 'stock');
 * ```
 */
export function neverNegative(value: number, what = 'value'): Verdict {
  numeric('neverNegative', what, value);
  return {
    invariant: `${what}-never-negative`,
    ok: value >= 0,
    detail: value >= 0 ? `${what} is ${value}` : `${what} is ${value}: it went below zero`,
  };
}

/**
 * A sum is conserved (money moved between accounts neither created nor destroyed).
 *
 * @example
 * ```ts
 * conservedSum(totalBefore, Number(row?.total), 'balance');
 * ```
 */
export function conservedSum(before: number, after: number, what = 'sum'): Verdict {
  numeric('conservedSum', `${what} before`, before);
  numeric('conservedSum', `${what} after`, after);
  return {
    invariant: `${what}-conserved`,
    ok: before === after,
    detail:
      before === after
        ? `${what} stayed ${after}`
        : `${what} was ${before} before the burst and ${after} after: ${Math.abs(after - before)} ${after > before ? 'created' : 'lost'}`,
  };
}

/**
 * Values that must be unique (order numbers, seat holders, coupon redemptions per user).
 *
 * @example
 * ```ts
 * unique((await sql('SELECT holder FROM seats')).map((r) => r.holder), 'seat holders');
 * ```
 */
export function unique(values: readonly unknown[], what = 'values'): Verdict {
  const counts = new Map<string, number>();
  for (const value of values) {
    const key = JSON.stringify(value) ?? String(value);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const duplicates = [...counts].filter(([, n]) => n > 1);
  return {
    invariant: `unique-${what}`,
    ok: duplicates.length === 0,
    detail:
      duplicates.length === 0
        ? `${values.length} ${what}, all distinct`
        : `duplicate ${what}: ${duplicates
            .slice(0, 3)
            .map(([v, n]) => `${v} ×${n}`)
            .join(', ')}`,
  };
}

/**
 * The final state equals what the successful responses reported: for
 * example stock after = stock before − number of 2xx purchases.
 *
 * @example
 * ```ts
 * matchesSuccesses(responses, { actual: stockAfter, expected: (wins) => stockBefore - wins, what: 'stock' });
 * ```
 */
export function matchesSuccesses(
  responses: readonly ObservedResponse[],
  options: {
    readonly actual: number;
    readonly expected: (successes: number) => number;
    readonly what?: string;
    readonly isSuccess?: (response: ObservedResponse) => boolean;
  },
): Verdict {
  const wins = responses.filter(options.isSuccess ?? isSuccess);
  const what = options.what ?? 'state';
  numeric('matchesSuccesses', what, options.actual);
  const expected = numeric('matchesSuccesses', `expected ${what}`, options.expected(wins.length));
  return {
    invariant: `${what}-matches-successes`,
    ok: options.actual === expected,
    detail:
      options.actual === expected
        ? `${what} is ${options.actual}, consistent with ${wins.length} success(es)`
        : `${wins.length} request(s) reported success, so ${what} should be ${expected}, but it is ${options.actual}`,
  };
}

/**
 * The state names exactly the requests that won: the seat's holder is the
 * passenger whose request got the 2xx, the coupon's redeemers are the
 * customers who were told "redeemed". `identify` says who sent a response's
 * request; `values` are read from the final state. A 200 for a request whose
 * effect is not in the data, or data nobody was told about, is a race.
 *
 * @example
 * ```ts
 * const rows = await sql('SELECT passenger FROM seats WHERE id = 1');
 * winnersMatch(responses, rows.map((r) => r.passenger), {
 *   identify: (r) => (r.request.json as { passenger: string }).passenger,
 * });
 * ```
 */
export function winnersMatch(
  responses: readonly ObservedResponse[],
  values: readonly unknown[],
  options: {
    readonly identify: (response: ObservedResponse) => unknown;
    readonly isWinner?: (response: ObservedResponse) => boolean;
    readonly what?: string;
  },
): Verdict {
  const what = options.what ?? 'state';
  const key = (value: unknown): string => JSON.stringify(value) ?? String(value);
  const winners = responses.filter(options.isWinner ?? isSuccess);
  const told = new Map<string, ObservedResponse[]>();
  for (const r of winners) {
    const k = key(options.identify(r));
    told.set(k, [...(told.get(k) ?? []), r]);
  }
  const stored = new Map<string, number>();
  for (const v of values) stored.set(key(v), (stored.get(key(v)) ?? 0) + 1);
  const toldNotStored = [...told].filter(([k, rs]) => (stored.get(k) ?? 0) < rs.length);
  const storedNotTold = [...stored].filter(([k, n]) => (told.get(k)?.length ?? 0) < n);
  const ok = toldNotStored.length === 0 && storedNotTold.length === 0;
  const problems: string[] = [];
  if (toldNotStored.length > 0)
    problems.push(
      `told they won but not in the ${what}: ${describeRequests(toldNotStored.flatMap(([, rs]) => rs))}`,
    );
  if (storedNotTold.length > 0)
    problems.push(
      `in the ${what} but no request was told it won: ${storedNotTold
        .slice(0, 3)
        .map(([k]) => k)
        .join(', ')}`,
    );
  return {
    invariant: `winners-match-${what}`,
    ok,
    detail: ok
      ? `${winners.length} winner(s), all and only them in the ${what}`
      : `${winners.length} request(s) won and the ${what} holds ${values.length}: ${problems.join('; ')}`,
  };
}
