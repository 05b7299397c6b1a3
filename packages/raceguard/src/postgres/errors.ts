/**
 * PostgreSQL-specific failures, and the mapping from driver errors to them.
 */
import { LockAcquireTimeoutError } from '../core/lock.js';
import { RaceguardError, messageOf } from '../core/errors.js';

/** The shape of an error raised by the server through `pg`. */
interface ServerErrorShape {
  readonly code: string;
  readonly severity?: string;
  readonly table?: string;
  readonly column?: string;
  readonly constraint?: string;
}

function isServerError(error: unknown): error is Error & ServerErrorShape {
  return (
    error instanceof Error &&
    typeof (error as { code?: unknown }).code === 'string' &&
    /^[0-9A-Z]{5}$/.test((error as unknown as { code: string }).code) &&
    'severity' in error
  );
}

/**
 * The server rejected a statement. `sqlState` is PostgreSQL's five-character
 * error code (`23505` unique violation, `40001` serialization failure, ...).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof DatabaseError && e.sqlState === '23505') return reply.code(409).send(); }
 * ```
 */
export class DatabaseError extends RaceguardError {
  /** SQLSTATE of the server error. */
  readonly sqlState: string;
  /** Constraint named by the server, for integrity violations. */
  readonly constraint: string | undefined;

  constructor(cause: Error & ServerErrorShape, code = 'RACEGUARD_DATABASE_ERROR') {
    super(code, `database error ${cause.code}: ${cause.message}`, { cause });
    this.sqlState = cause.code;
    this.constraint = cause.constraint;
  }
}

/**
 * A table or column named in the options does not exist (SQLSTATE 42P01 or
 * 42703). Nothing was written.
 *
 * @example
 * ```ts
 * await atomicDecrement(pool, { table: 'prodcts', key: { id: 1 }, column: 'stock', amount: 1 });
 * // UnknownIdentifierError: database error 42P01: relation "prodcts" does not exist
 * ```
 */
export class UnknownIdentifierError extends DatabaseError {
  constructor(cause: Error & ServerErrorShape) {
    super(cause, 'RACEGUARD_UNKNOWN_IDENTIFIER');
  }
}

/**
 * The connection to the server failed or was cut (network error, server
 * shutdown, terminated backend).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof ConnectionError) return reply.code(503).send(); }
 * ```
 */
export class ConnectionError extends RaceguardError {
  constructor(cause: unknown) {
    super('RACEGUARD_CONNECTION_ERROR', `connection to PostgreSQL failed: ${messageOf(cause)}`, {
      cause,
    });
  }
}

/** The pool was closed (`end()` was called) before the operation started. *
 * @example
 * ```ts
 * await pool.end();
 * await transaction(pool, work); // PoolClosedError, `work` never runs
 * ```
 */
export class PoolClosedError extends RaceguardError {
  constructor() {
    super(
      'RACEGUARD_POOL_CLOSED',
      'the connection pool is closed (end() was called); nothing was run',
    );
  }
}

export { CommitOutcomeUnknownError } from '../core/errors.js';

/**
 * COMMIT answered ROLLBACK: a statement inside the transaction failed, the
 * error was caught by the callback, and the server discarded the whole
 * transaction. Nothing was written.
 *
 * @example
 * ```ts
 * await transaction(pool, async (tx) => {
 *   await tx.query('INSERT INTO orders ...');
 *   await tx.query('INSERT INTO audit ...').catch(() => {}); // swallowed: the transaction is now aborted
 * }); // rejects with TransactionRolledBackError instead of pretending success
 * ```
 */
export class TransactionRolledBackError extends RaceguardError {
  constructor() {
    super(
      'RACEGUARD_TRANSACTION_ROLLED_BACK',
      'COMMIT was answered with ROLLBACK: a statement failed inside the transaction and its error was swallowed; nothing was written',
    );
  }
}

export {
  TransactionClosedError,
  OptimisticConflictError,
  RowNotFoundError,
} from '../core/errors.js';

/**
 * A row lock or advisory lock could not be taken: NOWAIT found it held, or
 * `lockTimeoutMs` passed (SQLSTATE 55P03). The transaction is aborted.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof LockTimeoutError) return reply.code(409).send({ retryAfterMs: 100 }); }
 * ```
 */
export class LockTimeoutError extends LockAcquireTimeoutError {
  /** What was being locked, e.g. `"products" FOR UPDATE NOWAIT` or `advisory lock "order:42"`. */
  readonly target: string;
  /** The timeout that expired; `0` for NOWAIT and try-locks; `undefined` for a `lock_timeout` set elsewhere. */
  readonly lockTimeoutMs: number | undefined;

  constructor(target: string, lockTimeoutMs: number | undefined, cause: unknown) {
    const how =
      lockTimeoutMs === undefined
        ? 'within the lock_timeout in force'
        : lockTimeoutMs > 0
          ? `within ${lockTimeoutMs}ms`
          : 'immediately (NOWAIT)';
    // One acquire-timeout class: catching LockAcquireTimeoutError catches this too.
    super(target, lockTimeoutMs ?? Number.NaN, '', {
      code: 'RACEGUARD_LOCK_TIMEOUT',
      message: `could not lock ${target} ${how}`,
      cause,
    });
    this.target = target;
    this.lockTimeoutMs = lockTimeoutMs;
  }
}

const CONNECTION_MESSAGES = [
  'Connection terminated',
  'not queryable',
  'Client was closed',
  'connection timeout',
  'timeout exceeded when trying to connect',
];

/**
 * Translate a failure from the driver into a raceguard error. raceguard
 * errors pass through unchanged; errors of unknown origin become
 * {@link ConnectionError} only when they look like transport failures and are
 * otherwise returned unchanged.
 */
export function fromDriverError(error: unknown): unknown {
  if (error instanceof RaceguardError) return error;
  if (isServerError(error)) {
    if (
      error.code.startsWith('08') ||
      error.code === '57P01' ||
      error.code === '57P02' ||
      error.code === '57P03'
    ) {
      return new ConnectionError(error);
    }
    if (error.code === '42P01' || error.code === '42703') return new UnknownIdentifierError(error);
    return new DatabaseError(error);
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new ConnectionError(error);
    if (error.message.includes('after calling end on the pool')) return new PoolClosedError();
    if (CONNECTION_MESSAGES.some((m) => error.message.includes(m)))
      return new ConnectionError(error);
  }
  return error;
}

/** SQLSTATEs after which re-running the whole transaction is safe and likely to succeed. */
const TRANSIENT_SQLSTATES = new Set(['40001', '40P01']);

/**
 * `true` for a serialization failure (40001) or a deadlock (40P01): the
 * server rolled the transaction back and it may be re-run from the start.
 *
 * @example
 * ```ts
 * await retry(() => myOwnTransaction(), { isRetryable: isTransientConflict });
 * ```
 */
export function isTransientConflict(error: unknown): boolean {
  return error instanceof DatabaseError && TRANSIENT_SQLSTATES.has(error.sqlState);
}
