/**
 * Argument checks of the CLI package's public functions (the burst clients,
 * `runScenario`, the lab). Each throws raceguard's `InvalidArgumentError`
 * naming the argument, before any side effect. The library keeps its own
 * checks private; these are the few this package needs.
 */
import { InvalidArgumentError } from 'raceguard';

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

export function assertNonNegativeFinite(argument: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(argument, 'a finite number >= 0', value);
  }
}

export function assertOneOf<const T extends string>(
  argument: string,
  value: unknown,
  allowed: readonly T[],
): asserts value is T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    const expected = `one of ${allowed.map((a) => `"${a}"`).join(', ')}`;
    throw new InvalidArgumentError(argument, expected, value);
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

/** The message of an unknown thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * `signal?.aborted === true`, read through a call so that the type checker
 * does not assume a signal it already checked is unchanged across `await`s.
 */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
