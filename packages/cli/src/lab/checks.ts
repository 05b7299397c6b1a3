/**
 * The lab's argument checks, on the public `InvalidArgumentError`: the lab
 * uses raceguard as a customer does, through its public exports only.
 */
import { InvalidArgumentError } from 'raceguard';

/** `value` must be an integer of at least `min`. */
export function checkInteger(argument: string, value: unknown, min: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new InvalidArgumentError(argument, `an integer >= ${min}`, value);
}

/** `value` must be a finite number of at least 0. */
export function checkNonNegative(argument: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new InvalidArgumentError(argument, 'a finite number >= 0', value);
}

/** `value` must be an object (an options bag), a non-empty string, or an AbortSignal, as named. */
export function checkShape(
  argument: string,
  value: unknown,
  shape: 'object' | 'string' | 'signal?',
): void {
  const ok =
    shape === 'object'
      ? typeof value === 'object' && value !== null && !Array.isArray(value)
      : shape === 'string'
        ? typeof value === 'string' && value.length > 0
        : value === undefined || value instanceof AbortSignal;
  if (!ok)
    throw new InvalidArgumentError(
      argument,
      { object: 'an options object', string: 'a non-empty string', 'signal?': 'an AbortSignal' }[
        shape
      ],
      value,
    );
}
