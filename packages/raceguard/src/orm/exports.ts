/** What every ORM adapter re-exports besides its own helpers. */
export type {
  OrmAtomicDecrementOptions,
  OrmAtomicIncrementOptions,
  OrmAtomicResult,
  OrmCompareAndSetOptions,
  OrmHelpers,
  OrmIsolationLevel,
  OrmKey,
  OrmLockRowsOptions,
  OrmOptimisticUpdateOptions,
  OrmOptimisticUpdateResult,
  OrmRow,
  OrmTableName,
  OrmTransactionOptions,
  SqlTarget,
} from './relational.js';
export { isRetryableSqlError } from './relational.js';
export { OptimisticConflictError, RowNotFoundError, RetryExhaustedError } from '../core/errors.js';
export type { VersionedRow, VersionedRows } from '../core/versioned-store.js';
