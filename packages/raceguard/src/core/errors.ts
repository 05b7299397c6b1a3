/**
 * The error hierarchy shared by every raceguard module.
 *
 * Every error raceguard throws is an instance of {@link RaceguardError} with a
 * stable `code` that callers can switch on, and the original failure attached
 * as `cause` where there is one.
 */

/** Options accepted by every raceguard error constructor. */
export interface RaceguardErrorOptions {
  /** The underlying failure, if any. */
  readonly cause?: unknown;
}

/**
 * Base class of all raceguard errors.
 *
 * @example
 * ```ts
 * try {
 *   await transaction(pool, work);
 * } catch (error) {
 *   if (error instanceof RaceguardError && error.code === 'RACEGUARD_RETRY_EXHAUSTED') {
 *     reply.code(409);
 *   }
 * }
 * ```
 */
export class RaceguardError extends Error {
  /** A stable, machine-readable identifier of the failure kind. */
  readonly code: string;

  constructor(code: string, message: string, options: RaceguardErrorOptions = {}) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * An argument failed validation. Thrown before any side effect happens.
 *
 * @example
 * ```ts
 * atomicDecrement(pool, { table: 'products', key: { id: 1 }, column: 'stock', amount: -1 });
 * // InvalidArgumentError: amount must be a positive safe integer, received -1 (number)
 * ```
 */
export class InvalidArgumentError extends RaceguardError {
  /** Name of the offending argument or option, e.g. `options.amount`. */
  readonly argument: string;
  /** The value that was rejected. */
  readonly value: unknown;

  constructor(
    argument: string,
    expected: string,
    value: unknown,
    /** For subclasses: a more specific stable code. */
    code = 'RACEGUARD_INVALID_ARGUMENT',
  ) {
    super(code, `${argument} must be ${expected}, received ${describeValue(value)}`);
    this.argument = argument;
    this.value = value;
  }
}

/**
 * A bounded retry loop gave up. Carries how many attempts ran, how long they
 * took in total and, as `cause`, the failure of the last attempt.
 *
 * @example
 * ```ts
 * catch (error) {
 *   if (error instanceof RetryExhaustedError) log.warn({ attempts: error.attempts }, 'gave up');
 * }
 * ```
 */
export class RetryExhaustedError extends RaceguardError {
  /** Number of attempts that ran. */
  readonly attempts: number;
  /** Milliseconds from the first attempt's start to giving up (monotonic clock). */
  readonly elapsedMs: number;
  /** Why the loop stopped: attempts ran out, or the deadline would have passed. */
  readonly reason: 'max-attempts' | 'deadline';

  constructor(
    attempts: number,
    elapsedMs: number,
    reason: 'max-attempts' | 'deadline',
    cause: unknown,
  ) {
    const why =
      reason === 'deadline'
        ? 'the deadline would pass before the next attempt'
        : 'no attempts left';
    super(
      'RACEGUARD_RETRY_EXHAUSTED',
      `gave up after ${attempts} attempt(s) in ${Math.round(elapsedMs)}ms: ${why}; last error: ${messageOf(cause)}`,
      { cause },
    );
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
    this.reason = reason;
  }
}

/**
 * The caller's `AbortSignal` fired. `cause` is the signal's `reason`.
 *
 * @example
 * ```ts
 * await retry(work, { signal: AbortSignal.timeout(1000) }); // AbortedError after 1 s of retrying
 * ```
 */
export class AbortedError extends RaceguardError {
  constructor(reason: unknown) {
    super('RACEGUARD_ABORTED', `operation aborted: ${messageOf(reason)}`, { cause: reason });
  }
}

/** Render a value and its type for an error message: `-1 (number)`, `"" (string)`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string')
    return `${JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)} (string)`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${String(value)} (${typeof value})`;
  }
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  const kind = Object.prototype.toString.call(value).slice(8, -1);
  if (kind === 'Object') {
    const keys = Object.keys(value);
    return keys.length === 0
      ? 'an empty object'
      : `an object with keys ${keys
          .slice(0, 6)
          .map((k) => JSON.stringify(k))
          .join(', ')}${keys.length > 6 ? ', ...' : ''}`;
  }
  return `an object (${kind})`;
}

/**
 * A rejected promise of `error`, made an `Error` if it is not one: for a
 * function that returns a promise and must not throw (bad input, a driver
 * that threw synchronously).
 */
export function rejection(error: unknown): Promise<never> {
  return Promise.reject(error instanceof Error ? error : new Error(String(error)));
}

/** The message of an unknown thrown value. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * The connection died while COMMIT was in flight: the transaction may or may
 * not have committed. raceguard does not retry, because re-running a
 * transaction that did commit would apply it twice. Reconcile by reading the
 * data (or use an idempotency key).
 *
 * @example
 * ```ts
 * catch (e) {
 *   if (e instanceof CommitOutcomeUnknownError) await reconcile(orderId); // read back, do not blindly retry
 * }
 * ```
 */
export class CommitOutcomeUnknownError extends RaceguardError {
  constructor(cause: unknown) {
    super(
      'RACEGUARD_COMMIT_OUTCOME_UNKNOWN',
      `the connection failed during COMMIT; the transaction may or may not have been applied: ${messageOf(cause)}`,
      { cause },
    );
  }
}

/** A query was sent through a {@link Transaction} after it had finished. *
 * @example
 * ```ts
 * let leaked: Transaction;
 * await transaction(pool, async (tx) => { leaked = tx; });
 * await leaked.query('SELECT 1'); // TransactionClosedError
 * ```
 */
export class TransactionClosedError extends RaceguardError {
  constructor() {
    super(
      'RACEGUARD_TRANSACTION_CLOSED',
      'this transaction has already finished; queries through it are refused',
    );
  }
}

/**
 * Optimistic locking lost every race it entered: the version kept changing
 * between read and write until attempts ran out. Carries the row as it was
 * last read, so the caller can show the user what changed.
 *
 * @example
 * ```ts
 * catch (e) {
 *   if (e instanceof OptimisticConflictError) return reply.code(409).send({ current: e.current });
 * }
 * ```
 */
export class OptimisticConflictError extends RaceguardError {
  /** The row's current content, as last read. */
  readonly current: Readonly<Record<string, unknown>> | undefined;
  /** Attempts made. */
  readonly attempts: number;
  /** Milliseconds spent (monotonic clock). */
  readonly elapsedMs: number;

  constructor(
    current: Readonly<Record<string, unknown>> | undefined,
    attempts: number,
    elapsedMs: number,
    cause?: unknown,
  ) {
    super(
      'RACEGUARD_OPTIMISTIC_CONFLICT',
      `the row kept changing concurrently; gave up after ${attempts} attempt(s) in ${Math.round(elapsedMs)}ms`,
      { cause },
    );
    this.current = current;
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
  }
}

/**
 * No row matched the key.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof RowNotFoundError) return reply.code(404).send(); }
 * ```
 */
export class RowNotFoundError extends RaceguardError {
  /** The key that matched nothing. */
  readonly key: Readonly<Record<string, unknown>>;

  constructor(table: string, key: Readonly<Record<string, unknown>>) {
    super('RACEGUARD_ROW_NOT_FOUND', `no row in ${table} matches ${JSON.stringify(key, jsonSafe)}`);
    this.key = key;
  }
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
