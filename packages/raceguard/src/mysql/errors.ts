import { RaceguardError, messageOf } from '../core/errors.js';
import { LockAcquireTimeoutError } from '../core/lock.js';

/** What mysql2 attaches to a server error. */
interface DriverError {
  readonly errno: number;
  readonly sqlState?: string;
  readonly code?: string;
  readonly message: string;
}

function isDriverError(error: unknown): error is DriverError {
  return error instanceof Error && typeof (error as { errno?: unknown }).errno === 'number';
}

/** MySQL / MariaDB error numbers raceguard acts on. */
export const MYSQL_ERRORS = {
  /** ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back. */
  deadlock: 1213,
  /** ER_LOCK_WAIT_TIMEOUT: only the statement is rolled back (unless innodb_rollback_on_timeout). MariaDB's NOWAIT answers it too. */
  lockWaitTimeout: 1205,
  /** ER_LOCK_NOWAIT (MySQL 8): NOWAIT found the row locked. */
  lockNowait: 3572,
  /** ER_DUP_ENTRY: a unique key already holds the value. */
  duplicateKey: 1062,
  /** ER_CHECKREAD (MariaDB): the row changed since the snapshot read it. */
  recordChanged: 1020,
} as const;

/** The server refused a statement; `errno`, `sqlState` and the driver's `code` are kept. */
export class MysqlDatabaseError extends RaceguardError {
  readonly errno: number;
  readonly sqlState: string | undefined;

  constructor(cause: DriverError) {
    super(
      'RACEGUARD_MYSQL_ERROR',
      `MySQL error ${cause.errno} (${cause.code ?? 'unknown'}): ${cause.message}`,
      {
        cause,
      },
    );
    this.errno = cause.errno;
    this.sqlState = cause.sqlState;
  }
}

/**
 * `optimisticUpdate` lost a race, re-read the row, and found the very
 * version it had just lost against: the connection reads a snapshot (a
 * `REPEATABLE READ` transaction, InnoDB's default), so every retry would
 * lose again and a conflict would report a row that is no longer current.
 * Run the update in autocommit or in a `READ COMMITTED` transaction.
 *
 * @example
 * ```ts
 * await transaction(pool, (tx) => optimisticUpdate(tx, options), { isolation: 'read committed' });
 * ```
 */
export class StaleSnapshotError extends RaceguardError {
  /** The version the write expected, and the re-read showed again. */
  readonly version: unknown;

  constructor(table: string, version: unknown) {
    super(
      'RACEGUARD_MYSQL_STALE_SNAPSHOT',
      `optimisticUpdate on ${table}: after a lost race the row still reads version ${String(version)}: ` +
        "this connection reads a snapshot (a REPEATABLE READ transaction, InnoDB's default), so every retry " +
        'would lose again; run optimisticUpdate in autocommit or in a READ COMMITTED transaction',
    );
    this.version = version;
  }
}

/** A row lock could not be taken: NOWAIT found it held, or the lock wait timed out. The statement failed. */
export class MysqlLockTimeoutError extends LockAcquireTimeoutError {
  constructor(target: string, cause: unknown) {
    super(target, 0, '', {
      code: 'RACEGUARD_MYSQL_LOCK_TIMEOUT',
      message: `${target}: the row lock could not be taken: ${messageOf(cause)}`,
      cause,
    });
  }
}

/**
 * True for failures after which re-running the whole transaction is safe
 * and likely to succeed: a deadlock (1213, the transaction was rolled
 * back), a lock wait timeout (1205: only the statement was rolled back, so
 * the transaction must be abandoned and re-run, never continued), MariaDB's
 * "record has changed" (1020) and any serialization failure (SQLSTATE 40001).
 */
export function isRetryableMysqlError(error: unknown): boolean {
  const cause = error instanceof MysqlDatabaseError ? error.cause : error;
  if (!isDriverError(cause)) return false;
  return (
    cause.errno === MYSQL_ERRORS.deadlock ||
    cause.errno === MYSQL_ERRORS.lockWaitTimeout ||
    cause.errno === MYSQL_ERRORS.recordChanged ||
    cause.sqlState === '40001'
  );
}

/** Wraps a driver failure in a typed error (server errors); leaves others as they are. */
export function fromMysqlError(error: unknown): unknown {
  if (error instanceof RaceguardError) return error;
  return isDriverError(error) ? new MysqlDatabaseError(error) : error;
}

/** True for a failure of the connection itself (not a refusal by the server). */
export function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (
    (typeof code === 'string' && (/^E[A-Z]+$/.test(code) || code === 'PROTOCOL_CONNECTION_LOST')) ||
    (error as { fatal?: unknown } | undefined)?.fatal === true
  );
}
