/**
 * Database-side delays: hold back the result of every statement that matches
 * a pattern, so that a read's answer reaches the application late and a
 * second request's write can land in the window, whatever language the
 * backend is written in.
 *
 * A pattern is one of
 * - a statement kind in capitals: `SELECT`, `UPDATE`, `INSERT`, `DELETE`, `BEGIN`, `COMMIT`, ...;
 * - a table: `products` (or `shop.products`), any statement that names it;
 * - a kind and a table: `SELECT products`;
 * - a regular expression over the statement's text: `/FROM products WHERE id/i`.
 */
import { InvalidArgumentError } from 'raceguard';
import type { StatementShape } from './statements.js';

/** One delay: statements matching `pattern` answer `ms` milliseconds late. */
export interface DbDelay {
  readonly pattern: string;
  readonly ms: number;
}

/** A delay ready to match. */
export interface DbDelayMatcher extends DbDelay {
  matches(text: string, shape: StatementShape): boolean;
}

const KIND = /^[A-Z]+(?: [A-Z]+)*$/;
const LONGEST_MS = 600_000;

/** Checks a delay and makes its matcher; throws `InvalidArgumentError` naming what is wrong. */
export function delayMatcher(delay: DbDelay, argument = 'delay'): DbDelayMatcher {
  const { pattern, ms } = delay;
  if (typeof pattern !== 'string' || pattern.trim() === '') {
    throw new InvalidArgumentError(`${argument}.pattern`, 'a non-empty pattern', pattern);
  }
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > LONGEST_MS) {
    throw new InvalidArgumentError(`${argument}.ms`, `an integer from 0 to ${LONGEST_MS}`, ms);
  }
  const matches = matcherOf(pattern.trim(), argument);
  return { pattern, ms, matches };
}

function matcherOf(
  pattern: string,
  argument: string,
): (text: string, shape: StatementShape) => boolean {
  const regex = /^\/(.+)\/([a-z]*)$/s.exec(pattern);
  if (regex !== null) {
    let compiled: RegExp;
    try {
      compiled = new RegExp(regex[1] as string, regex[2]);
    } catch (error) {
      throw new InvalidArgumentError(
        `${argument}.pattern`,
        `a valid regular expression (${(error as Error).message})`,
        pattern,
      );
    }
    return (text) => {
      compiled.lastIndex = 0;
      return compiled.test(text);
    };
  }
  if (KIND.test(pattern)) return (_text, shape) => shape.kind === pattern;
  const [first, second, ...extra] = pattern.split(/\s+/);
  if (extra.length > 0 || (second !== undefined && !KIND.test(first as string))) {
    throw new InvalidArgumentError(
      `${argument}.pattern`,
      'a statement kind (SELECT), a table (products), both (SELECT products) or /a regular expression/',
      pattern,
    );
  }
  const kind = second === undefined ? undefined : first;
  const table = tableName(second ?? (first as string));
  return (_text, shape) =>
    (kind === undefined || shape.kind === kind) &&
    shape.tables.some((t) => t === table || t.endsWith(`.${table}`));
}

/** A table as the parser names it: unquoted names fold to lower case, quoted ones keep theirs. */
function tableName(written: string): string {
  return written
    .split('.')
    .map((part) => (/^".*"$/.test(part) ? part.slice(1, -1) : part.toLowerCase()))
    .join('.');
}

/**
 * Parses `PATTERN=MS` (the command line's `--db-delay`); the last `=`
 * separates, so a regular expression may hold one.
 */
export function parseDbDelay(text: string): DbDelay {
  const at = text.lastIndexOf('=');
  const ms = at === -1 ? Number.NaN : Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(ms)) {
    throw new InvalidArgumentError('--db-delay', 'PATTERN=MS, e.g. "SELECT products=200"', text);
  }
  const delay = { pattern: text.slice(0, at), ms };
  delayMatcher(delay, '--db-delay');
  return delay;
}
