/**
 * Argument checks shared by every public function. Each throws
 * {@link InvalidArgumentError} naming the argument, what was expected and
 * what was received, before any side effect.
 */
import { InvalidArgumentError } from './errors.js';

export function assertNonEmptyString(argument: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(argument, 'a non-empty string', value);
  }
}

export function assertPositiveInteger(argument: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(argument, 'a positive safe integer', value);
  }
}

export function assertNonNegativeInteger(
  argument: string,
  value: unknown,
): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(argument, 'a non-negative safe integer', value);
  }
}

export function assertSafeInteger(argument: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new InvalidArgumentError(argument, 'a safe integer', value);
  }
}

export function assertNonNegativeFinite(argument: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(argument, 'a finite number >= 0', value);
  }
}

export function assertFunction(
  argument: string,
  value: unknown,
): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw new InvalidArgumentError(argument, 'a function', value);
}

export function assertOneOf<const T extends string>(
  argument: string,
  value: unknown,
  allowed: readonly T[],
): asserts value is T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(
      argument,
      `one of ${allowed.map((a) => `"${a}"`).join(', ')}`,
      value,
    );
  }
}

export function assertPlainObject<T>(
  argument: string,
  value: T,
): asserts value is T & Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(argument, 'an object', value);
  }
}

export function assertAbortSignal(
  argument: string,
  value: unknown,
): asserts value is AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal)) {
    throw new InvalidArgumentError(argument, 'an AbortSignal', value);
  }
}

/**
 * Refuse an option name outside `known` (a misspelt option would otherwise
 * be ignored in silence); options set to `undefined` pass.
 */
export function assertKnownOptions(
  argument: string,
  options: object,
  known: ReadonlySet<string>,
  why: Readonly<Record<string, string>> = {},
): void {
  const unknown = unknownOption(options, known);
  if (unknown === undefined) return;
  const [name] = unknown;
  throw new InvalidArgumentError(
    `${argument}.${name}`,
    why[name] ?? `one of the options (${[...known].join(', ')})`,
    name,
  );
}

/**
 * The first option of `options` (set to something other than `undefined`)
 * whose name is not in `known`, with its value: the one check behind every
 * refusal of a misspelt or foreign option, at construction.
 */
export function unknownOption(
  options: object,
  known: ReadonlySet<string> | readonly string[],
): readonly [string, unknown] | undefined {
  const has = (name: string): boolean =>
    known instanceof Set ? known.has(name) : (known as readonly string[]).includes(name);
  for (const [name, value] of Object.entries(options))
    if (value !== undefined && !has(name)) return [name, value];
  return undefined;
}

/** A row version: an integer as a number, a bigint or a string of digits (bigint columns arrive as strings). */
export function assertVersion(
  argument: string,
  value: unknown,
): asserts value is number | bigint | string {
  if (!(
    typeof value === 'bigint' ||
    (typeof value === 'number' && Number.isSafeInteger(value)) ||
    (typeof value === 'string' && /^-?\d+$/.test(value))
  )) {
    throw new InvalidArgumentError(argument, 'an integer (number, bigint or digit string)', value);
  }
}
