/**
 * Splits a statement written for a driver (`$1`, `$2` for PostgreSQL, `?`
 * for MySQL) into its text pieces and the index of the value each
 * placeholder takes, skipping quoted identifiers and string literals, so an
 * ORM that builds statements from pieces (Drizzle's `sql`) can bind the same
 * values as parameters.
 */
export function splitPlaceholders(
  text: string,
  dialect: 'postgres' | 'mysql',
): { readonly pieces: string[]; readonly indexes: number[] } {
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
