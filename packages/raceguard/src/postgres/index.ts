/**
 * `raceguard/postgres`: the relational fixes for race conditions, over any
 * `pg`-compatible pool.
 *
 * @packageDocumentation
 */
export {
  transaction,
  type Transaction,
  type TransactionOptions,
  type IsolationLevel,
} from './transaction.js';
export {
  optimisticUpdate,
  compareAndSet,
  type OptimisticUpdateOptions,
  type OptimisticUpdateResult,
  type CompareAndSetOptions,
  type CompareAndSetResult,
} from './optimistic.js';
export { lockRows, type LockRowsOptions, type RowLockMode, type RowLockWait } from './row-lock.js';
export {
  atomicDecrement,
  atomicIncrement,
  type AtomicDecrementOptions,
  type AtomicIncrementOptions,
  type AtomicUpdateResult,
} from './atomic.js';
export {
  advisoryLockKey,
  advisoryXactLock,
  tryAdvisoryXactLock,
  withAdvisoryLock,
  type AdvisoryLockOptions,
} from './advisory.js';
export { fencedUpdate, type FencedUpdateOptions } from './fenced-update.js';
export { PostgresAdvisoryLock, type PostgresAdvisoryLockOptions } from './advisory-lock.js';
export {
  PostgresLeaseLock,
  createLockTables,
  DEFAULT_REAP_AFTER_MS,
  type PostgresLeaseLockOptions,
  type LockTableOptions,
} from './lease-lock.js';
export type { PgListenerLike } from './release-notifications.js';
export { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
export { isTransientConflict } from './errors.js';
export {
  DatabaseError,
  UnknownIdentifierError,
  ConnectionError,
  PoolClosedError,
  CommitOutcomeUnknownError,
  TransactionRolledBackError,
  TransactionClosedError,
  LockTimeoutError,
  OptimisticConflictError,
  RowNotFoundError,
} from './errors.js';
export type {
  PoolLike,
  PoolClientLike,
  Queryable,
  QueryResultLike,
  Row,
  SqlValue,
  KeyValues,
} from './types.js';
export {
  PostgresIdempotencyStore,
  createIdempotencyTable,
  idempotentTransaction,
  type PostgresIdempotencyStoreOptions,
  type IdempotencyTableOptions,
  type IdempotentTransactionOptions,
  type AbandonedRecord,
} from './idempotency-store.js';
export {
  runPhases,
  resumeAbandoned,
  PhaseMismatchError,
  type Phase,
  type PhaseContext,
  type PhasedOperation,
  type RunPhasesOptions,
  type ResumeAbandonedOptions,
  type ResumeReport,
} from './atomic-phases.js';
export {
  PostgresOutbox,
  OutboxRelay,
  OutboxRelayError,
  type PostgresOutboxOptions,
  type OutboxEntry,
  type OutboxRelayOptions,
  type RelayEvent,
} from './messaging/outbox.js';
export {
  PostgresInbox,
  InboxGapError,
  type PostgresInboxOptions,
  type InboxOutcome,
} from './messaging/inbox.js';
export {
  ReplicaRouter,
  RoutedSession,
  isReadOnlyStatement,
  type ReplicaRouterOptions,
  type RouteOptions,
  type ReadSource,
} from './replica-router.js';
export { SessionTokens } from './session-tokens.js';
export {
  versionedRows,
  type VersionedRows,
  type VersionedRow,
  type VersionedRowsOptions,
} from './versioned-rows.js';
export {
  createCombiner,
  BatchDeadlineError,
  BatcherClosedError,
  type Combiner,
  type CombinerOptions,
  type CombinerRequest,
  type CombinedResult,
  type CombinedBatch,
} from './combiner.js';
