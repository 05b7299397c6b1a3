/** Pieces every raceguard command shares: option parsers and Ctrl-C handling. */
import { InvalidArgumentError as CommanderArgumentError } from 'commander';
import { AbortedError } from 'raceguard';
import { parseDbDelay, type DbDelay } from '../proxy/db-delays.js';

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
  const onInt = (): void => controller.abort(new Interrupt('SIGINT'));
  const onTerm = (): void => controller.abort(new Interrupt('SIGTERM'));
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onTerm);
  try {
    return await work(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) throw new AbortedError(controller.signal.reason);
    throw error;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}

/** The reason of an {@link interruptible} abort: which signal came. */
export class Interrupt extends Error {
  constructor(readonly signal: 'SIGINT' | 'SIGTERM') {
    super(`interrupted (${signal})`);
  }
}

/** The signal that interrupted the work `error` ended, if that is what happened. */
export function interruptOf(error: unknown): 'SIGINT' | 'SIGTERM' | undefined {
  if (!(error instanceof AbortedError)) return undefined;
  return error.cause instanceof Interrupt ? error.cause.signal : undefined;
}

/** A commander parser for a repeatable `--db-delay PATTERN=MS`, collected into a list. */
export function collectDbDelay(value: string, previous: readonly DbDelay[] | undefined): DbDelay[] {
  try {
    return [...(previous ?? []), parseDbDelay(value)];
  } catch (error) {
    throw new CommanderArgumentError((error as Error).message);
  }
}
