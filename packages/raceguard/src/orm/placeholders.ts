/**
 * Splits a statement written for a driver (`$1`, `$2` for PostgreSQL, `?`
 * for MySQL) into its text pieces and the index of the value each
 * placeholder takes, skipping quoted identifiers and string literals, so an
 * ORM that builds statements from pieces (Drizzle's `sql`) can bind the same
 * values as parameters.
 */
export function splitPlaceholders(text: string, dialect: 'postgres' | 'mysql'): SplitStatement {
  const cache = dialect === 'postgres' ? postgresSplits : mysqlSplits;
  let split = cache.get(text);
  if (split === undefined) {
    split = split_(text, dialect);
    // raceguard's statements are few and fixed per table; the bound keeps a
    // stream of distinct tables from growing the cache without end.
    if (cache.size < 1000) cache.set(text, split);
  }
  return split;
}

/** A statement's text pieces and, between them, the index of each placeholder's value. */
export interface SplitStatement {
  readonly pieces: readonly string[];
  readonly indexes: readonly number[];
}

const postgresSplits = new Map<string, SplitStatement>();
const mysqlSplits = new Map<string, SplitStatement>();

function split_(text: string, dialect: 'postgres' | 'mysql'): SplitStatement {
  const pieces: string[] = [];
  const indexes: number[] = [];
  let piece = '';
  let quote: string | undefined;
  let next = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i] as string;
    if (quote !== undefined) {
      piece += c;
      if (c === quote) quote = undefined; // a doubled quote closes and reopens: same result
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      quote = c;
      piece += c;
      continue;
    }
    if (dialect === 'mysql' && c === '?') {
      pieces.push(piece);
      indexes.push(next++);
      piece = '';
      continue;
    }
    if (dialect === 'postgres' && c === '$') {
      const digits = /^\d+/.exec(text.slice(i + 1))?.[0];
      if (digits !== undefined) {
        pieces.push(piece);
        indexes.push(Number(digits) - 1);
        piece = '';
        i += digits.length;
        continue;
      }
    }
    piece += c;
  }
  pieces.push(piece);
  return { pieces, indexes };
}
