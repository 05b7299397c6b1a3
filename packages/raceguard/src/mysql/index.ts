/**
 * `raceguard/mysql`: the relational fixes on MySQL and MariaDB through
 * mysql2 (an optional peer): atomic conditional updates that report the new
 * value in one round trip and judge success by rows changed (not mysql2's
 * matched `affectedRows`), compare-and-set on a version column, row locks
 * with NOWAIT / SKIP LOCKED, and transactions that re-run on InnoDB's
 * deadlocks, lock wait timeouts and serialization failures.
 *
 * @packageDocumentation
 */
export {
  atomicDecrement,
  atomicIncrement,
  compareAndSet,
  type MysqlAtomicResult,
  type MysqlAtomicDecrementOptions,
  type MysqlAtomicIncrementOptions,
  type MysqlCompareAndSetOptions,
} from './atomic.js';
export {
  transaction,
  type MysqlTransaction,
  type MysqlTransactionOptions,
  type MysqlIsolationLevel,
} from './transaction.js';
export {
  lockRows,
  type MysqlLockRowsOptions,
  type MysqlRowLockMode,
  type MysqlRowLockWait,
} from './row-lock.js';
export {
  MysqlDatabaseError,
  MysqlLockTimeoutError,
  StaleSnapshotError,
  MYSQL_ERRORS,
  isRetryableMysqlError,
} from './errors.js';
export { quoteIdentifier, quoteTable, type MysqlTableName } from './identifiers.js';
export type {
  MysqlQueryable,
  MysqlPool,
  MysqlPoolConnection,
  MysqlKey,
  MysqlRow,
  ResultHeader,
} from './types.js';
export { CommitOutcomeUnknownError, TransactionClosedError } from '../core/errors.js';
export {
  optimisticUpdate,
  type MysqlOptimisticUpdateOptions,
  type MysqlOptimisticUpdateResult,
} from './optimistic.js';
export { versionedRows, type MysqlVersionedRow } from './versioned-rows.js';
export { OptimisticConflictError, RowNotFoundError } from '../core/errors.js';
export { MysqlAdvisoryLock, type MysqlAdvisoryLockOptions } from './advisory-lock.js';
export {
  MysqlIdempotencyStore,
  createMysqlIdempotencyTable,
  type MysqlIdempotencyTableOptions,
} from './idempotency-store.js';
export { MysqlLeaseLock, createMysqlLockTables, type MysqlLeaseLockOptions } from './lease-lock.js';
