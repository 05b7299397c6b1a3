/**
 * The lock API every backend implements (in-process, Redis, ...), and
 * {@link withLock}, its scoped form.
 */
import { throwIfAborted } from './abort.js';
import { InvalidArgumentError, RaceguardError } from './errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from './validate.js';

/** Options of {@link Locker.acquire}. */
export interface AcquireOptions {
  /**
   * Lease length in ms: a holder that neither releases nor extends within it
   * loses the lock, so a crashed holder cannot block others forever.
   * Backends without a lease (in-process) hold until release when unset.
   * @default backend-specific (30000 for leased backends)
   */
  readonly ttlMs?: number;
  /**
   * How long to wait for the lock, in ms. `0` tries once.
   * @default Infinity
   */
  readonly waitMs?: number;
  /** Stops waiting; a lock granted after the caller gave up is released at once. */
  readonly signal?: AbortSignal;
  /**
   * Keep extending the lease in the background until release (a watchdog).
   * @default false
   */
  readonly autoExtend?: boolean;
  /** Called once if the lock is lost (or may be lost) while held; never throws into the process. */
  readonly onLost?: (error: LockLostError) => void;
}

/**
 * A held lock. Release it with `release()` or `await using`.
 *
 * @example
 * ```ts
 * await using lock = await locker.acquire('invoice:42', { ttlMs: 10_000 });
 * await db.fencedUpdate({ ..., token: lock.token, signal: lock.signal });
 * ```
 */
export interface LockHandle extends AsyncDisposable {
  /** The locked key. */
  readonly key: string;
  /**
   * Fencing token: strictly greater than every token granted before for this
   * key. Pass it to the resource so a stale holder's writes are refused.
   */
  readonly token: bigint;
  /**
   * Until when, on this process's monotonic clock (`performance.now()`), the
   * lock is certainly held, after margins for round trip and clock drift.
   * `Infinity` for locks without a lease.
   */
  readonly validUntil: number;
  /** Aborts, with a {@link LockLostError} reason, when the lock is lost or may be lost. */
  readonly signal: AbortSignal;
  /** Renew the lease for `ttlMs` (default: the acquire's `ttlMs`). Fails with {@link LockNotOwnerError} if it was lost. */
  extend(ttlMs?: number): Promise<void>;
  /** Give the lock up, if still held. Idempotent; never releases someone else's lock. */
  release(): Promise<void>;
}

/** A lock service: one instance per backend. */
export interface Locker {
  /** Wait for the lock on `key` (up to `waitMs`). Rejects with {@link LockAcquireTimeoutError} when the wait runs out. */
  acquire(key: string, options?: AcquireOptions): Promise<LockHandle>;
  /** Take the lock on `key` if it is free right now; `undefined` if not. */
  tryAcquire(
    key: string,
    options?: Omit<AcquireOptions, 'waitMs'>,
  ): Promise<LockHandle | undefined>;
}

/** The wait for a lock ran out. */
export class LockAcquireTimeoutError extends RaceguardError {
  readonly key: string;
  readonly waitedMs: number;

  constructor(key: string, waitedMs: number, detail = '') {
    super(
      'RACEGUARD_LOCK_ACQUIRE_TIMEOUT',
      `could not acquire lock ${JSON.stringify(key)} within ${Math.round(waitedMs)}ms${detail ? ` (${detail})` : ''}`,
    );
    this.key = key;
    this.waitedMs = waitedMs;
  }
}

/** An operation on a handle whose lock is no longer held by it. */
export class LockNotOwnerError extends RaceguardError {
  readonly key: string;

  constructor(key: string) {
    super(
      'RACEGUARD_LOCK_NOT_OWNER',
      `lock ${JSON.stringify(key)} is not held by this handle (it expired or was released)`,
    );
    this.key = key;
  }
}

/** Why a held lock was lost. */
export type LockLossReason = 'expired' | 'stall' | 'extend-failed' | 'backend';

/** A held lock was lost, or may have been: stop acting on what it protects. */
export class LockLostError extends RaceguardError {
  readonly key: string;
  readonly reason: LockLossReason;

  constructor(key: string, reason: LockLossReason, cause?: unknown) {
    const why = {
      expired: 'its lease expired',
      stall: 'the event loop stalled past the safety margin, so the lease may have expired',
      'extend-failed': 'renewing the lease failed',
      backend: 'the lock service failed',
    }[reason];
    super('RACEGUARD_LOCK_LOST', `lock ${JSON.stringify(key)} lost: ${why}`, { cause });
    this.key = key;
    this.reason = reason;
  }
}

/** The lock service could not be reached or failed. */
export class LockBackendError extends RaceguardError {
  constructor(message: string, cause: unknown) {
    super('RACEGUARD_LOCK_BACKEND_UNAVAILABLE', message, { cause });
  }
}

/**
 * A write carried a fencing token older than one the resource has already
 * seen: the writer's lock was lost and someone else has acted since.
 */
export class StaleTokenError extends RaceguardError {
  readonly token: bigint;
  readonly currentToken: bigint;

  constructor(resource: string, token: bigint, currentToken: bigint) {
    super(
      'RACEGUARD_STALE_TOKEN',
      `write to ${resource} refused: fencing token ${token} is older than ${currentToken}, which the resource has already seen`,
    );
    this.token = token;
    this.currentToken = currentToken;
  }
}

/**
 * Run `fn` while holding the lock on `key`, and release it afterwards
 * whatever happens. `fn` receives the handle: pass `handle.signal` to
 * anything it waits for and `handle.token` to the resource it writes.
 *
 * @example
 * ```ts
 * await withLock(locker, `order:${id}`, async (lock) => {
 *   await charge(order, { signal: lock.signal });
 * }, { ttlMs: 15_000, autoExtend: true });
 * ```
 */
export async function withLock<T>(
  locker: Locker,
  key: string,
  fn: (handle: LockHandle) => Promise<T>,
  options: AcquireOptions = {},
): Promise<T> {
  assertFunction('fn', fn);
  const handle = await locker.acquire(key, options);
  try {
    return await fn(handle);
  } finally {
    await handle.release();
  }
}

/**
 * `tryAcquire` in terms of `acquire`: one attempt, `undefined` when the lock is held.
 *
 * @example
 * ```ts
 * tryAcquire(key, options) { return tryOnce(() => this.acquire(key, { ...options, waitMs: 0 })); }
 * ```
 */
export async function tryOnce(acquire: () => Promise<LockHandle>): Promise<LockHandle | undefined> {
  try {
    return await acquire();
  } catch (error) {
    if (error instanceof LockAcquireTimeoutError) return undefined;
    throw error;
  }
}

/** Acquire options after validation, with defaults applied. */
export interface CheckedAcquireOptions {
  readonly ttlMs: number;
  readonly waitMs: number;
  readonly signal: AbortSignal | undefined;
}

/**
 * Validate the key and the common acquire options (before any I/O) and
 * apply the backend's default lease. Throws {@link InvalidArgumentError}, or
 * `AbortedError` if `signal` has already fired.
 */
export function checkAcquire(
  key: unknown,
  options: AcquireOptions,
  defaultTtlMs: number,
): CheckedAcquireOptions {
  assertNonEmptyString('key', key);
  assertPlainObject('options', options);
  const { ttlMs = defaultTtlMs, waitMs = Number.POSITIVE_INFINITY, signal } = options;
  assertPositiveInteger('options.ttlMs', ttlMs);
  if (!(typeof waitMs === 'number' && waitMs >= 0)) {
    throw new InvalidArgumentError('options.waitMs', 'a number of ms >= 0 (or Infinity)', waitMs);
  }
  assertAbortSignal('options.signal', signal);
  throwIfAborted(signal);
  return { ttlMs, waitMs, signal };
}

/** Validate a drift factor: a share of the lease, in [0, 0.5). */
export function checkDriftFactor(value: number): number {
  if (!(typeof value === 'number' && value >= 0 && value < 0.5)) {
    throw new InvalidArgumentError('options.driftFactor', 'a number in [0, 0.5)', value);
  }
  return value;
}

/**
 * Until when a lease granted for `ttlMs`, asked for at `sentAt` (monotonic
 * clock), is certainly held: the lease minus a margin for clock drift
 * (`driftFactor` of the lease) and timer granularity (2 ms). Measuring from
 * before the request makes the round trip count against the lease.
 */
export function leaseEnd(sentAt: number, ttlMs: number, driftFactor: number): number {
  return sentAt + ttlMs - (Math.ceil(ttlMs * driftFactor) + 2);
}
