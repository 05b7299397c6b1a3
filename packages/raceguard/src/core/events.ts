/**
 * What raceguard's defences do, as events on `node:diagnostics_channel`:
 * lock waits and holds, retried transactions and optimistic updates, and
 * idempotency outcomes. Nothing is built or sent while nobody subscribes
 * (one `hasSubscribers` check per event), so the core stays free of any
 * telemetry dependency; `raceguard/otel` turns the events into OpenTelemetry
 * metrics and span events, and anyone can subscribe directly.
 *
 * @example
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe(RACEGUARD_CHANNELS.retry, (event) => console.log(event));
 * ```
 */
import { channel } from 'node:diagnostics_channel';

/** The channel names. */
export const RACEGUARD_CHANNELS = {
  /** {@link LockEvent}s, published by `withLock`. */
  lock: 'raceguard:lock',
  /** {@link RetryEventMessage}s: transactions and optimistic updates that ran again or gave up. */
  retry: 'raceguard:retry',
  /** {@link IdempotencyEventMessage}s: how each idempotent request was served. */
  idempotency: 'raceguard:idempotency',
  /** {@link CacheEventMessage}s: hits, misses, fills, refused stale fills, waits of `LeaseCache`. */
  cache: 'raceguard:cache',
  /** {@link MessageEventMessage}s: what the ordered consumer did with each message. */
  messaging: 'raceguard:messaging',
  /** {@link ReplicaEventMessage}s: where `ReplicaRouter` sent each read. */
  replica: 'raceguard:replica',
} as const;

/** What the ordered consumer did: applied, dropped a duplicate, buffered one that came early, retried, parked, … */
export interface MessageEventMessage {
  readonly event:
    | 'applied'
    | 'duplicate'
    | 'buffered'
    | 'retry'
    | 'dead-letter'
    | 'gap'
    | 'resumed'
    | 'requeued'
    | 'error';
  /** The message's ordering key (absent for a gap and for an unreadable message). */
  readonly key?: string;
  /** `dead-letter`: why; `requeued`: why. */
  readonly reason?: string;
}

/** Where one read of `ReplicaRouter` went. */
export interface ReplicaEventMessage {
  readonly source: 'primary' | 'replica';
  /** `replica-down`: a replica failed mid-read and the primary served it. */
  readonly fallback?: 'replica-down' | 'replica-timeout' | 'recovery-conflict';
}

/** What a `LeaseCache` did for one read or fill. */
export interface CacheEventMessage {
  readonly event: 'hit' | 'miss' | 'stale-hit' | 'fill' | 'fill-refused' | 'wait' | 'backend-error';
  readonly key: string;
  /** `hit`: which tier served it. */
  readonly tier?: 'local' | 'redis';
  /** `fill`: how long the loader took, ms; `wait` (a caller that gave up waiting for another's fill): how long it waited, ms. */
  readonly ms?: number;
}

/**
 * A lock event: one use of a lock through `withLock` (`released` when it
 * was granted and given back, with both its wait and its hold, or a
 * refusal), or a held lock {@link LockLostEvent lost}.
 */
export type LockEvent = LockUseEvent | LockLostEvent;

/** A held lock was lost (its lease ran out or could not be renewed, its session ended, the event loop stalled). */
export interface LockLostEvent {
  readonly event: 'lost';
  readonly backend: string;
  readonly key: string;
  /** `expired`, `stall`, `extend-failed`, `backend`, `session`, … (the handle's `LockLossReason`). */
  readonly reason: string;
}

/**
 * One use of a lock through `withLock`, or a row lock of `lockRows` that
 * timed out (backend `PostgresRowLock` / `MysqlRowLock`, key: the table).
 */
export interface LockUseEvent {
  readonly event: 'released' | 'timeout' | 'aborted' | 'failed';
  /** The locker's class, e.g. `RedisLock`, `PostgresLeaseLock`, `KeyedMutex`. */
  readonly backend: string;
  /** The lock's key as the caller named it (an exporter decides what of it leaves the process). */
  readonly key: string;
  /** From the call to the grant or the refusal, ms. */
  readonly waitedMs: number;
  /** From the grant to the release, ms (`released`). */
  readonly heldMs?: number;
}

/** A retried operation: one event per retry, and one when attempts ran out. */
export interface RetryEventMessage {
  readonly event: 'retry' | 'exhausted';
  /** `transaction` (serialization failures, deadlocks, lock wait timeouts) or `optimistic-update` (lost version races). */
  readonly operation: string;
  /** 1-based attempt that failed. */
  readonly attempt: number;
  /** What failed: a SQLSTATE (`40001`), a MySQL error number (`1213`), `version-moved`, or the error's name. */
  readonly code: string;
}

/** How one idempotent request was served. */
export interface IdempotencyEventMessage {
  readonly event:
    'executed' | 'replayed' | 'in-flight' | 'key-reused' | 'store-error' | 'unprotected';
}

const lockChannel = channel(RACEGUARD_CHANNELS.lock);
const retryChannel = channel(RACEGUARD_CHANNELS.retry);
const idempotencyChannel = channel(RACEGUARD_CHANNELS.idempotency);
const cacheChannel = channel(RACEGUARD_CHANNELS.cache);
const messagingChannel = channel(RACEGUARD_CHANNELS.messaging);
const replicaChannel = channel(RACEGUARD_CHANNELS.replica);

/** Publish a messaging event, built only when someone listens. */
export function publishMessage(make: () => MessageEventMessage): void {
  if (messagingChannel.hasSubscribers) messagingChannel.publish(make());
}

/** Publish a replica routing decision when someone listens. */
export function publishReplica(event: ReplicaEventMessage): void {
  if (replicaChannel.hasSubscribers) replicaChannel.publish(event);
}

/** Publish a cache event, built only when someone listens. */
export function publishCache(make: () => CacheEventMessage): void {
  if (cacheChannel.hasSubscribers) cacheChannel.publish(make());
}

/** Whether anyone listens for cache events (check before building one on a hot path). */
export function cacheEventsWanted(): boolean {
  return cacheChannel.hasSubscribers;
}

/** Whether anyone listens for lock events (check before timing anything). */
export function lockEventsWanted(): boolean {
  return lockChannel.hasSubscribers;
}

/**
 * Publish a lock event. Build it only when {@link lockEventsWanted}: lock
 * events sit on the hottest paths, where even a closure per use shows.
 */
export function publishLock(event: LockEvent): void {
  if (lockChannel.hasSubscribers) lockChannel.publish(event);
}

/** Publish a retry event, built only when someone listens. */
export function publishRetry(make: () => RetryEventMessage): void {
  if (retryChannel.hasSubscribers) retryChannel.publish(make());
}

/** Publish an idempotency outcome when someone listens. */
export function publishIdempotency(event: IdempotencyEventMessage['event']): void {
  if (idempotencyChannel.hasSubscribers) idempotencyChannel.publish({ event });
}

/** The code an event names for a failure: SQLSTATE, MySQL errno, or the error's name. */
export function failureCode(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth += 1) {
    const { sqlState, errno, code, cause } = current as Record<string, unknown>;
    if (typeof sqlState === 'string' && sqlState !== '') return sqlState;
    if (typeof errno === 'number') return String(errno);
    if (typeof code === 'string' && !code.startsWith('RACEGUARD_')) return code;
    current = cause;
  }
  return error instanceof Error ? error.name : 'unknown';
}
