/**
 * Invariant helpers for scenario checks. Each returns a {@link Verdict}
 * whose `detail` explains a violation in HTTP terms: which requests, what
 * they were told, what the data says.
 */

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

function describeRequests(responses: readonly ObservedResponse[], limit = 3): string {
  const shown = responses.slice(0, limit).map((r) => {
    const snippet = r.text.length > 40 ? `${r.text.slice(0, 37)}...` : r.text;
    return `request ${r.index + 1} got ${r.status} ${JSON.stringify(snippet)}`;
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
 * A quantity (stock, balance, seats left) never goes below zero.
 *
 * @example
 * ```ts
 * neverNegative(Number(product?.stock), 'stock');
 * ```
 */
export function neverNegative(value: number, what = 'value'): Verdict {
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
  const expected = options.expected(wins.length);
  const what = options.what ?? 'state';
  return {
    invariant: `${what}-matches-successes`,
    ok: options.actual === expected,
    detail:
      options.actual === expected
        ? `${what} is ${options.actual}, consistent with ${wins.length} success(es)`
        : `${wins.length} request(s) reported success, so ${what} should be ${expected}, but it is ${options.actual}`,
  };
}
