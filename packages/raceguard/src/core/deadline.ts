/**
 * The two waits every lock backend needs, written once: a pause that ends
 * on a timer, a wake-up or an abort ({@link pause}), and a backend round
 * trip raced against the caller's deadline and signal ({@link within}).
 * A deadline is a promise to the caller: it holds even while a server is
 * paused mid-reply, and whatever the late reply grants is handed back.
 */
import { AbortedError } from './errors.js';

/** The longest delay Node's timers take: beyond it, `setTimeout` fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `setTimeout` for any delay: past {@link MAX_TIMER_MS} (about 24.8 days)
 * Node fires a timer after 1 ms, so a longer wait is made of shorter
 * timers. Returns how to cancel it.
 *
 * @example
 * ```ts
 * const cancel = longTimer(() => giveUp(), 30 * 24 * 3_600_000);
 * ```
 */
export function longTimer(fn: () => void, ms: number): () => void {
  if (ms <= MAX_TIMER_MS) {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  }
  const end = performance.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = (): void => {
    const left = end - performance.now();
    timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(fn, Math.max(0, left));
  };
  arm();
  return () => clearTimeout(timer);
}

/** Options of {@link pause}. */
export interface PauseOptions {
  /** Rejects the pause with `AbortedError` (at once when already aborted). */
  readonly signal?: AbortSignal | undefined;
  /**
   * Registers the pause's `wake` function with whatever can end it early (a
   * release notification), and returns how to unregister it. Called once,
   * after the aborted check; the returned function always runs.
   */
  readonly wakeOn?: ((wake: () => void) => () => unknown) | undefined;
}

/**
 * Wait `ms` milliseconds, or until woken, or reject with `AbortedError` when
 * `signal` fires. An already aborted signal rejects before anything is
 * registered; the timer, the abort listener and the wake registration are
 * removed on every path. `ms` may be `Infinity` (wait for a wake-up or the
 * signal only).
 *
 * @example
 * ```ts
 * await pause(pollMs, { signal, wakeOn: (wake) => { waiters.add(wake); return () => waiters.delete(wake); } });
 * ```
 */
export function pause(ms: number, options: PauseOptions = {}): Promise<void> {
  const { signal, wakeOn } = options;
  if (signal?.aborted === true) return Promise.reject(new AbortedError(signal.reason));
  if (ms <= 0 && wakeOn === undefined) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    let cancelTimer: (() => void) | undefined;
    const registration: { off?: (() => unknown) | undefined } = {};
    let settled = false;
    const finish = (error?: AbortedError): void => {
      if (settled) return;
      settled = true;
      cancelTimer?.();
      signal?.removeEventListener('abort', onAbort);
      registration.off?.();
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = (): void => finish(new AbortedError(signal?.reason));
    const wake = (): void => finish();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (Number.isFinite(ms)) cancelTimer = longTimer(wake, ms);
    registration.off = wakeOn?.(wake);
    // A wake that came during registration ran before `off` was known.
    if (settled) registration.off?.();
  });
}

/** Options of {@link within}. */
export interface WithinOptions<T> {
  /** Monotonic-clock time (`performance.now()`) by which the call must answer; `Infinity` for none. */
  readonly deadline: number;
  readonly signal?: AbortSignal | undefined;
  /** The error for a call that outlived the deadline. */
  readonly timeout: () => Error;
  /**
   * Receives what the call resolves to after the caller was answered (a
   * grant that must be given back). Its failures are swallowed: the caller
   * has already been told.
   */
  readonly late?: ((value: T) => unknown) | undefined;
  /**
   * Undoes, by owner, what the call may still do on the server when it
   * failed without an answer (a driver's own timeout, a dropped
   * connection): see {@link undoUnknownOutcome}.
   */
  readonly unknown?: (() => Promise<unknown>) | undefined;
}

/** When {@link undoUnknownOutcome} runs its undo, in ms after the failure. */
const UNDO_AFTER_MS = [0, 250, 1000, 5000];

/**
 * A call whose reply never came (the driver's `commandTimeout` or
 * `query_timeout` fired, the connection dropped after the command was sent)
 * may still take effect on the server afterwards: a lock granted, a claim
 * recorded, held for a whole lease by a caller who was told it failed. Run
 * `undo` (owner-checked, so harmless when there is nothing to undo) at once
 * and again after 250 ms, 1 s and 5 s: on a Redis connection it queues
 * behind the stalled command; on a SQL pool it runs on another connection
 * and may come before the late commit, hence the repeats. Failures are
 * swallowed; timers are unref'd.
 */
export function undoUnknownOutcome(undo: () => Promise<unknown>): void {
  const run = (): void => {
    try {
      void undo().catch(() => undefined);
    } catch {
      // Nobody to tell: the caller already has its error.
    }
  };
  for (const ms of UNDO_AFTER_MS) {
    if (ms === 0) run();
    else setTimeout(run, ms).unref();
  }
}

/**
 * Race one backend round trip against the caller's deadline and signal:
 * resolve or reject with the call if it answers in time, reject with
 * `timeout()` or `AbortedError` if not. A reply that arrives afterwards goes
 * to `late`, so a lock granted to a caller who gave up is released, never
 * leaked; a late failure is ignored. The deadlines of all pending calls
 * share one timer ({@link Deadlines}).
 *
 * @example
 * ```ts
 * const reply = await within(redis.evalsha(...), {
 *   deadline, signal,
 *   timeout: () => new LockAcquireTimeoutError(key, waited, 'Redis did not answer in time'),
 *   late: ([granted]) => granted === 1 && release(),
 * });
 * ```
 */
export function within<T>(call: Promise<T>, options: WithinOptions<T>): Promise<T> {
  const { deadline, signal, timeout, late, unknown } = options;
  if (deadline === Number.POSITIVE_INFINITY && signal === undefined) {
    if (unknown === undefined) return call;
    return call.catch((error: unknown) => {
      undoUnknownOutcome(unknown);
      throw error;
    });
  }
  // One handler pair on the call does everything (the answer, a late grant,
  // the undo of an unknown outcome): no promise in between, on the path of
  // every lock's every round trip.
  return new Promise<T>((resolve, reject) => {
    let waiter: Waiter | undefined;
    let cancelLong: (() => void) | undefined;
    let answered = false;
    const cleanup = (): void => {
      if (waiter !== undefined) DEADLINES.remove(waiter);
      cancelLong?.();
      signal?.removeEventListener('abort', onAbort);
    };
    const giveUp = (error: Error): void => {
      if (answered) return;
      answered = true;
      cleanup();
      reject(error);
    };
    const onAbort = (): void => giveUp(new AbortedError(signal?.reason));
    call.then(
      (value) => {
        if (!answered) {
          answered = true;
          cleanup();
          resolve(value);
          return;
        }
        if (late === undefined) return;
        try {
          void Promise.resolve(late(value)).catch(() => undefined);
        } catch {
          // The caller has its answer; a failing clean-up has nobody to tell.
        }
      },
      (error: unknown) => {
        if (unknown !== undefined) undoUnknownOutcome(unknown);
        if (answered) return; // a late failure: the caller has been told
        answered = true;
        cleanup();
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
    if (signal?.aborted === true) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (deadline !== Number.POSITIVE_INFINITY) {
      // A deadline under MAX_TIMER_MS on the monotonic clock (which starts
      // at 0 with the process) is less than that away: no clock read needed.
      if (deadline <= MAX_TIMER_MS || deadline - performance.now() <= MAX_TIMER_MS)
        waiter = DEADLINES.add(deadline, () => giveUp(timeout()));
      else cancelLong = longTimer(() => giveUp(timeout()), deadline - performance.now());
    }
  });
}

/** A deadline {@link within} is waiting on; see {@link Deadlines}. */
interface Waiter {
  readonly deadline: number;
  /** Its place in the heap; -1 once removed. */
  index: number;
  readonly expire: () => void;
}

/**
 * Every pending deadline of {@link within} in the process, in one binary
 * min-heap with one Node timer armed for the earliest: a round trip costs
 * a heap entry, not a timer of its own (measured: about 6% less CPU per
 * bounded call in isolation; within noise on whole routes). A new deadline
 * later than the armed one (the common case: the same limit, later) only
 * joins the heap; the timer is re-armed when an earlier one comes, and
 * cleared when none is left, so an idle process exits. An expired deadline is given up when the
 * timer fires, at most 1 ms before it by the monotonic clock (Node's own
 * timers may fire that early against `performance.now()`).
 */
class Deadlines {
  readonly #heap: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is armed for (`Infinity`: none). */
  #armedFor = Number.POSITIVE_INFINITY;

  add(deadline: number, expire: () => void): Waiter {
    const waiter: Waiter = { deadline, index: this.#heap.length, expire };
    this.#heap.push(waiter);
    this.#up(waiter.index);
    if (deadline < this.#armedFor) this.#arm(deadline);
    return waiter;
  }

  remove(waiter: Waiter): void {
    const heap = this.#heap;
    if (waiter.index < 0) return;
    const last = heap.pop() as Waiter;
    if (last !== waiter) {
      heap[waiter.index] = last;
      last.index = waiter.index;
      this.#down(last.index);
      this.#up(last.index);
    }
    waiter.index = -1;
    if (heap.length === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = Number.POSITIVE_INFINITY;
    }
  }

  #arm(deadline: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedFor = deadline;
    this.#timer = setTimeout(this.#fire, Math.max(0, Math.ceil(deadline - performance.now())));
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const heap = this.#heap;
    const due = performance.now() + 1;
    try {
      for (let first = heap[0]; first !== undefined && first.deadline <= due; first = heap[0]) {
        this.remove(first);
        first.expire();
      }
    } finally {
      // Even if an expiry threw, the deadlines after it keep their timer.
      const next = heap[0];
      if (next !== undefined && this.#timer === undefined) this.#arm(next.deadline);
    }
  };

  #up(index: number): void {
    const heap = this.#heap;
    const waiter = heap[index] as Waiter;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as Waiter;
      if (parent.deadline <= waiter.deadline) break;
      heap[index] = parent;
      parent.index = index;
      index = parentIndex;
    }
    heap[index] = waiter;
    waiter.index = index;
  }

  #down(index: number): void {
    const heap = this.#heap;
    const waiter = heap[index] as Waiter;
    const size = heap.length;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= size) break;
      const right = left + 1;
      const child =
        right < size && (heap[right] as Waiter).deadline < (heap[left] as Waiter).deadline
          ? right
          : left;
      const smaller = heap[child] as Waiter;
      if (smaller.deadline >= waiter.deadline) break;
      heap[index] = smaller;
      smaller.index = index;
      index = child;
    }
    heap[index] = waiter;
    waiter.index = index;
  }
}

/** The process's one set of pending deadlines. */
const DEADLINES = new Deadlines();
