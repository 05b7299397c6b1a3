import { assertFunction, assertNonEmptyString, assertNonNegativeFinite } from '../core/validate.js';
import type { Execution } from './execution.js';
import { ANYTHING } from './footprint.js';
import { wrapForExecution, type WrapOptions } from './intercept.js';

/** A timer started with `ctx.setTimeout`. */
export interface ExploreTimer {
  /** Cancels the timer if it has not fired; safe to call twice. */
  clear(): void;
}

/**
 * What an explored program receives: tasks whose interleaving the explorer
 * controls, explicit points, interception of the I/O they do, and virtual
 * timers.
 */
export interface ExploreContext {
  /** 1-based index of this run in the exploration. */
  readonly run: number;
  /**
   * Starts `fn` as a task. Tasks run one step at a time, in the order the
   * strategy picks; a step ends at a point, an intercepted call, or a sleep.
   *
   * @example
   * ```ts
   * await Promise.all([ctx.spawn('buyer-1', buy), ctx.spawn('buyer-2', buy)]);
   * ```
   */
  spawn<T>(name: string, fn: () => Promise<T> | T): Promise<T>;
  /**
   * An explicit scheduling point: other tasks may run here. `resource` names
   * the shared state the code around the point touches: steps on different
   * resources commute (partial-order sampling keeps their order, and the
   * systematic search runs one order of them). A point without one may
   * touch anything and conflicts with every step.
   */
  point(label: string, options?: { readonly resource?: string }): Promise<void>;
  /**
   * Intercepts a pg pool or client, an ioredis client, `fetch` or any
   * function returning a promise, or an object whose async `methods` you
   * name: each call made inside a task becomes a scheduling point when it
   * returns. Calls from outside tasks pass straight through.
   */
  wrap<T extends object>(target: T, options?: WrapOptions): T;
  /** A virtual sleep: no real time passes; sleeps end in order of their deadlines. */
  sleep(ms: number): Promise<void>;
  /** Runs `fn` as a task after a virtual delay of `ms`. */
  setTimeout(fn: () => unknown, ms: number): ExploreTimer;
  /** Virtual milliseconds since the run started (advanced by sleeps and timers). */
  now(): number;
}

export function createContext(execution: Execution, run: number): ExploreContext {
  let timers = 0;
  return {
    run,
    spawn(name, fn) {
      assertNonEmptyString('name', name);
      assertFunction('fn', fn);
      return execution.spawn(name, fn);
    },
    point(label, options) {
      assertNonEmptyString('label', label);
      if (options?.resource !== undefined)
        assertNonEmptyString('options.resource', options.resource);
      const resource = options?.resource;
      // A point that names nothing may guard anything: it conflicts with every step.
      return execution.point(
        label,
        resource === undefined ? ANYTHING : [{ resource, write: true }],
      );
    },
    wrap: (target, options) => wrapForExecution(execution, target, options),
    sleep(ms) {
      assertNonNegativeFinite('ms', ms);
      return execution.point(`sleep ${ms} ms`, ANYTHING, ms);
    },
    setTimeout(fn, ms) {
      assertFunction('fn', fn);
      assertNonNegativeFinite('ms', ms);
      let cleared = false;
      timers += 1;
      const task = execution.spawn(
        `timer-${timers}`,
        async () => {
          if (!cleared) await fn();
        },
        ms,
      );
      task.catch((error: unknown) => execution.reportError(error)); // nobody awaits a timer: its failure fails the run
      return {
        clear: () => {
          cleared = true;
        },
      };
    },
    now: () => execution.nowMs,
  };
}
