/** Pieces every raceguard command shares: option parsers and Ctrl-C handling. */
import { InvalidArgumentError as CommanderArgumentError } from 'commander';
import { AbortedError } from 'raceguard';

/** A commander parser for an integer of at least `min` (and at most `max`). */
export const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new CommanderArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? `expected an integer >= ${min}, got "${value}"`
          : `expected an integer from ${min} to ${max}, got "${value}"`,
      );
    }
    return n;
  };

/**
 * Run `work` with a signal that SIGINT and SIGTERM abort. After an
 * interrupt, whatever failed next (a stopped server, a closed socket) is a
 * consequence, so the interrupt itself is what is thrown.
 */
export async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await work(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) throw new AbortedError(controller.signal.reason);
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The message of anything thrown, for one-line error output. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
