/**
 * How a configuration file's mistakes are said, the same for scenarios and
 * the watch: the first zod issue as a {@link ScenarioError} (where, what was
 * expected, what was received), located in the source for a line number.
 */
import { ScenarioError } from 'raceguard/run';
import type { z } from 'zod';
import { located } from './source-position.js';

/** The value at `path` inside `value` (undefined where it stops). */
export function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const part of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
}

/** What a zod issue expected, in words ("an integer of at least 1"). */
export function expectation(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_small':
      return issue.origin === 'array'
        ? `a list of at least ${String(issue.minimum)} item(s)`
        : issue.origin === 'string'
          ? 'a non-empty string'
          : `a number of at least ${String(issue.minimum)}`;
    case 'too_big':
      return `a number of at most ${String(issue.maximum)}`;
    case 'invalid_type':
      return issue.expected === 'int' ? 'an integer' : `a ${issue.expected}`;
    case 'unrecognized_keys':
      return `free of unknown keys (${issue.keys.map((k) => `"${k}"`).join(', ')})`;
    case 'invalid_union':
      return 'one of the allowed shapes: { "sql": "..." } or { "http": "/path", "field": "a.b" } (or { "request": {...} } in setup and teardown)';
    case 'invalid_value':
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return issue.message;
  }
}

/**
 * The first issue of `error` as a {@link ScenarioError} located at `prefix`
 * followed by the issue's own path; `input` is what was parsed, `where`
 * names a path for people.
 */
export function issueError(
  error: z.ZodError,
  input: unknown,
  prefix: readonly PropertyKey[],
  where: (path: readonly PropertyKey[]) => string,
): ScenarioError {
  const issue = error.issues[0] as z.core.$ZodIssue;
  const at = [...prefix, ...issue.path];
  return located(new ScenarioError(where(at), expectation(issue), valueAt(input, issue.path)), at);
}

/**
 * The one name of `names` that `value` has as a key (a check is written
 * `{ "unique": {...} }`), or a located {@link ScenarioError} when it has
 * none or several.
 */
export function namedVariant<N extends string>(
  value: unknown,
  names: readonly N[],
  path: readonly PropertyKey[],
  where: (path: readonly PropertyKey[]) => string,
): N {
  const named =
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? names.filter((name) => name in value)
      : [];
  if (named.length === 1) return named[0] as N;
  throw located(
    new ScenarioError(
      where(path),
      named.length === 0
        ? `an object naming one check: ${names.join(', ')}`
        : `an object naming one check, not ${named.join(' and ')}`,
      value,
    ),
    path,
  );
}
