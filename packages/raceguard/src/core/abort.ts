import { pause } from './deadline.js';
import { AbortedError } from './errors.js';

/**
 * Throw {@link AbortedError} if `signal` has fired.
 *
 * @example
 * ```ts
 * throwIfAborted(options.signal);
 * ```
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortedError(signal.reason);
}

/**
 * Wait `ms` milliseconds, or reject with {@link AbortedError} as soon as
 * `signal` fires. The timer and the abort listener are always removed.
 *
 * @example
 * ```ts
 * await sleep(50, request.signal);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return pause(ms, { signal });
}

/** An abort signal created only when someone reads it. */
export interface LazyAbort {
  readonly signal: AbortSignal;
  abort(reason: unknown): void;
}

/**
 * An `AbortController` that is built on first use of `signal`. Lock handles
 * carry a loss signal that most callers never read; creating an
 * `AbortController` (an `EventTarget`) for every grant costs more than the
 * rest of an in-process grant.
 */
export function createLazyAbort(): LazyAbort {
  let controller: AbortController | undefined;
  let aborted = false;
  let reason: unknown;
  return {
    get signal() {
      if (controller === undefined) {
        controller = new AbortController();
        if (aborted) controller.abort(reason);
      }
      return controller.signal;
    },
    abort(why: unknown) {
      if (aborted) return;
      aborted = true;
      reason = why;
      controller?.abort(why);
    },
  };
}

/**
 * `signal?.aborted === true`, read through a call so that the type checker
 * does not assume a signal it already checked is unchanged across `await`s.
 */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
