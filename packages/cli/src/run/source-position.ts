/**
 * Where in a JSON or YAML file something is: the line and column of a
 * parse error, and of the field a validation error names (the errors of
 * scenario and watch files point there).
 */
import { LineCounter, parseDocument } from 'yaml';
import { ScenarioError } from 'raceguard/run';

/** A 1-based line and column. */
export interface SourcePosition {
  readonly line: number;
  readonly col: number;
}

const PATHS = new WeakMap<ScenarioError, readonly PropertyKey[]>();

/** Remembers the field (keys and indexes in the parsed document) `error` is about. */
export function located(error: ScenarioError, path: readonly PropertyKey[]): ScenarioError {
  PATHS.set(error, path);
  return error;
}

/** The field an error made by {@link located} is about, if known. */
export function pathOf(error: unknown): readonly PropertyKey[] | undefined {
  return error instanceof ScenarioError ? PATHS.get(error) : undefined;
}

/** 1-based line and column of `offset` in `text`. */
function lineCol(text: string, offset: number): SourcePosition {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const line = before.split('\n').length;
  return { line, col: before.length - before.lastIndexOf('\n') };
}

/** Where a `JSON.parse` or `yaml` parse of `text` stopped, if the error says. */
export function parseErrorPosition(
  format: 'JSON' | 'YAML',
  text: string,
  error: unknown,
): SourcePosition | undefined {
  if (format === 'YAML') {
    return (error as { linePos?: readonly SourcePosition[] } | null)?.linePos?.[0];
  }
  const message = error instanceof Error ? error.message : String(error);
  const at = /position (\d+)/.exec(message)?.[1];
  if (at !== undefined) return lineCol(text, Number(at));
  if (/end of JSON input/i.test(message)) return lineCol(text, text.length);
  return undefined;
}

/** Line and column of the node at `path` in a JSON or YAML text (its nearest existing parent when absent). */
export function positionOf(text: string, path: readonly PropertyKey[]): SourcePosition | undefined {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter });
  for (let depth = path.length; depth >= 0; depth--) {
    const node = document.getIn(path.slice(0, depth), true) as
      { range?: [number, number, number] } | undefined;
    if (node?.range !== undefined) return lineCounter.linePos(node.range[0]);
  }
  return undefined;
}

/** Adds ` (line L, column C)` to `error`'s message when it names a field found in `text`. */
export function withPosition(
  error: unknown,
  text: string,
  prefix: readonly PropertyKey[] = [],
): unknown {
  const path = pathOf(error);
  if (path === undefined || !(error instanceof Error)) return error;
  const where = positionOf(text, [...prefix, ...path]);
  if (where !== undefined) error.message += ` (line ${where.line}, column ${where.col})`;
  return error;
}
