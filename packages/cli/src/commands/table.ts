/** Plain-text tables for the terminal: aligned columns, numbers right-aligned, wrapped to a width. */

/** Options of {@link renderTable}. */
export interface TableOptions {
  /** Wrap the widest text columns so that every line fits. @default the terminal's width, or 120 */
  readonly maxWidth?: number;
}

const GAP = 2;
/** Words longer than this may be broken to make a table fit. */
const MIN_TEXT_WIDTH = 12;

/** A number, `-`, or numbers joined by ` / ` ("1.20 / 3.40"): aligned on the right. */
const looksNumeric = (cell: string | number): boolean =>
  typeof cell === 'number' || /^(-|-?\d[\d.,]*)( \/ (-|-?\d[\d.,]*))*$/.test(cell);

/** Break `text` into lines of at most `width` characters, at spaces where possible. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    let rest = word;
    while (rest.length > width) {
      if (line !== '') {
        lines.push(line);
        line = '';
      }
      // Break after a separator when there is one (negative-|stock=2), else anywhere.
      const head = rest.slice(0, width);
      const cut = Math.max(...['-', '=', '/', ',', '.', '_'].map((c) => head.lastIndexOf(c))) + 1;
      const at = cut > width / 3 ? cut : width;
      lines.push(rest.slice(0, at));
      rest = rest.slice(at);
    }
    if (line === '') line = rest;
    else if (line.length + 1 + rest.length <= width) line += ` ${rest}`;
    else {
      lines.push(line);
      line = rest;
    }
  }
  lines.push(line);
  return lines;
}

/**
 * Render rows as an aligned plain-text table. Columns whose cells are all
 * numbers (or `-`) are right-aligned; when the table is wider than
 * `maxWidth`, the widest text columns are wrapped onto several lines.
 *
 * @example
 * ```ts
 * console.log(renderTable(['scenario', 'trials'], [['inventory', 5]]));
 * ```
 */
/** The width tables and paragraphs are wrapped to: the terminal's, or 120 columns. */
export function outputWidth(): number {
  return process.stdout.isTTY === true ? process.stdout.columns || 120 : 120;
}

export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly (string | number)[])[],
  options: TableOptions = {},
): string {
  const maxWidth = options.maxWidth ?? outputWidth();
  const cells = rows.map((row) => headers.map((_, i) => String(row[i] ?? '')));
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((row) => looksNumeric(row[i] ?? '-')),
  );
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...cells.map((row) => row[i]?.length ?? 0)),
  );
  // A text column keeps its header and, up to a point, its longest word on one line.
  const minimum = headers.map((h, i) =>
    Math.max(
      h.length,
      Math.min(
        MIN_TEXT_WIDTH,
        Math.max(0, ...cells.flatMap((row) => (row[i] ?? '').split(' ').map((w) => w.length))),
      ),
    ),
  );
  const total = (): number => widths.reduce((a, b) => a + b, 0) + GAP * (widths.length - 1);
  // Narrow the widest text column, one character at a time, until the table fits.
  while (total() > maxWidth) {
    let widest = -1;
    for (const [i, w] of widths.entries()) {
      if (!numeric[i] && w > (minimum[i] ?? 0) && (widest < 0 || w > (widths[widest] ?? 0)))
        widest = i;
    }
    if (widest < 0) break;
    widths[widest] = (widths[widest] ?? 0) - 1;
  }
  const render = (row: readonly string[]): string[] => {
    const wrapped = row.map((cell, i) => (numeric[i] ? [cell] : wrap(cell, widths[i] ?? 0)));
    const height = Math.max(...wrapped.map((lines) => lines.length));
    return Array.from({ length: height }, (_, line) =>
      wrapped
        .map((lines, i) => {
          const cell = lines[line] ?? '';
          return numeric[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0);
        })
        .join(' '.repeat(GAP))
        .trimEnd(),
    );
  };
  return [
    ...render(headers),
    widths.map((w) => '-'.repeat(w)).join(' '.repeat(GAP)),
    ...cells.flatMap(render),
  ].join('\n');
}
