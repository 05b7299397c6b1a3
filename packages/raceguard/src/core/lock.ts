/**
 * The lock API every backend implements (in-process, Redis, ...), and
 * {@link withLock}, its scoped form.
 */
import { lockEventsWanted, publishLock } from './events.js';
import { throwIfAborted } from './abort.js';
import { MAX_TIMER_MS, within } from './deadline.js';
import { AbortedError, InvalidArgumentError, RaceguardError } from './errors.js';
import {
  assertAbortSignal,
  assertFunction,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
  unknownOption,
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
 * if (lock.signal.aborted) throw lock.signal.reason; // lost while we worked
 * await fencedUpdate(pool, { table: 'invoices', key: { id: 42 }, set: { status: 'sent' }, token: lock.token });
 * ```
 */
export interface LockHandle extends AsyncDisposable {
  /** The locked key. */
  readonly key: string;
  /**
   * Fencing token: greater than every token granted before for this key,
   * on every backend but Redlock, whose per-node counters make it a best
   * effort (docs/locks.md). Pass it to the resource so a stale holder's
   * writes are refused.
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

/**
 * The wait for a lock ran out: it stayed held, or the lock service did not
 * answer before the deadline. The one acquire-timeout class of raceguard:
 * the row and advisory lock timeouts of `raceguard/postgres`
 * (`LockTimeoutError`) are subclasses of it.
 *
 * @example
 * ```ts
 * try { await locks.acquire('report', { waitMs: 500 }); }
 * catch (e) { if (e instanceof LockAcquireTimeoutError) return reply.code(409).send(); throw e; }
 * ```
 */
export class LockAcquireTimeoutError extends RaceguardError {
  readonly key: string;
  readonly waitedMs: number;

  constructor(
    key: string,
    waitedMs: number,
    detail = '',
    /** For subclasses: their own stable code and message. */
    own?: { readonly code: string; readonly message: string; readonly cause?: unknown },
  ) {
    super(
      own?.code ?? 'RACEGUARD_LOCK_ACQUIRE_TIMEOUT',
      own?.message ??
        `could not acquire lock ${JSON.stringify(key)} within ${Math.round(waitedMs)}ms${detail ? ` (${detail})` : ''}`,
      own?.cause === undefined ? {} : { cause: own.cause },
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

/**
 * The lock service could not be reached or failed, on any backend: the
 * cause is attached. Subclasses say more (Redlock's
 * `QuorumNotReachedError` carries every node's vote;
 * {@link LockSessionLostError}).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof LockBackendError) return reply.code(503).send(); throw e; }
 * ```
 */
export class LockBackendError extends RaceguardError {
  constructor(message: string, cause: unknown, code = 'RACEGUARD_LOCK_BACKEND_UNAVAILABLE') {
    super(code, message, cause === undefined ? {} : { cause });
  }
}

/**
 * The session a waiter's place in the queue lived on (an etcd lease, a
 * ZooKeeper session) ended while it waited: its place is gone. The same
 * class on every backend with sessions.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof LockSessionLostError) return retryLater(); throw e; }
 * ```
 */
export class LockSessionLostError extends LockBackendError {
  readonly key: string;

  constructor(key: string, detail: string, cause?: unknown) {
    super(
      `lock ${JSON.stringify(key)}: ${detail}; the waiter lost its place in the queue`,
      cause,
      'RACEGUARD_LOCK_SESSION_LOST',
    );
    this.key = key;
  }
}

/**
 * An option this backend cannot honour (a lease on a backend without
 * leases, a lease length the server would round): refused when the lock is
 * constructed or the call is made, never silently ignored.
 *
 * @example
 * ```ts
 * new ZooKeeperLock({ client, ttlMs: 5000 }); // throws: the session timeout is the lease
 * ```
 */
export class UnsupportedLockOptionError extends InvalidArgumentError {
  constructor(backend: string, option: string, why: string, value: unknown) {
    super(option, `left unset: ${backend} ${why}`, value, 'RACEGUARD_UNSUPPORTED_OPTION');
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
  if (
    typeof locker !== 'object' ||
    locker === null ||
    typeof (locker as Partial<Locker>).acquire !== 'function'
  )
    throw new InvalidArgumentError('locker', 'a Locker (an object with acquire())', locker);
  assertFunction('fn', fn);
  if (lockEventsWanted()) return withLockObserved(locker, key, fn, options);
  // Nobody listening: the path of a library without events, no timing, no closure.
  const handle = await locker.acquire(key, options);
  let result: T;
  try {
    result = await fn(handle);
  } catch (error) {
    // The caller's error wins; a release failing as well is attached to it, not thrown instead.
    await handle
      .release()
      .catch((releaseError: unknown) => attachReleaseError(error, releaseError));
    throw error;
  }
  await handle.release();
  return result;
}

/** {@link withLock} while someone listens on the `raceguard:lock` channel: timed, one event per use. */
async function withLockObserved<T>(
  locker: Locker,
  key: string,
  fn: (handle: LockHandle) => Promise<T>,
  options: AcquireOptions,
): Promise<T> {
  const started = performance.now();
  const backend = (locker as { constructor?: { name?: string } }).constructor?.name ?? 'Locker';
  let handle: LockHandle;
  try {
    handle = await locker.acquire(key, options);
  } catch (error) {
    const event =
      error instanceof LockAcquireTimeoutError
        ? 'timeout'
        : error instanceof AbortedError
          ? 'aborted'
          : 'failed';
    if (lockEventsWanted())
      publishLock({ event, backend, key, waitedMs: performance.now() - started });
    throw error;
  }
  const granted = performance.now();
  let result: T;
  try {
    result = await fn(handle);
  } catch (error) {
    publishReleased(backend, key, started, granted);
    await handle
      .release()
      .catch((releaseError: unknown) => attachReleaseError(error, releaseError));
    throw error;
  }
  publishReleased(backend, key, started, granted);
  await handle.release();
  return result;
}

/**
 * One event per use of the lock: its wait and its hold together (half the
 * publishing), built only while someone listens, with no closure per use.
 */
function publishReleased(backend: string, key: string, started: number, granted: number): void {
  if (lockEventsWanted())
    publishLock({
      event: 'released',
      backend,
      key,
      waitedMs: granted - started,
      heldMs: performance.now() - granted,
    });
}

/** Attach a release failure to the caller's error (which wins) as `releaseError`. */
function attachReleaseError(error: unknown, releaseError: unknown): void {
  if (typeof error === 'object' && error !== null && Object.isExtensible(error))
    Object.defineProperty(error, 'releaseError', {
      value: releaseError,
      configurable: true,
      writable: true,
    });
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

/**
 * A {@link Locker} whose `tryAcquire` is one `acquire` with `waitMs: 0`:
 * the base of the lease and session lockers.
 */
export abstract class TryOnceLocker implements Locker {
  abstract acquire(key: string, options?: AcquireOptions): Promise<LockHandle>;

  /**
   * Take the lock on `key` if it is free right now; `undefined` if not.
   *
   * @example
   * ```ts
   * const lock = await locks.tryAcquire('nightly-job');
   * if (!lock) return;
   * ```
   */
  tryAcquire(
    key: string,
    options: Omit<AcquireOptions, 'waitMs'> = {},
  ): Promise<LockHandle | undefined> {
    return tryOnce(() => this.acquire(key, { ...options, waitMs: 0 }));
  }
}

/**
 * The shortest lease a remote lock accepts, in ms. A lease must outlast the
 * round trip that grants it by a margin; below that, every grant has lapsed
 * by the time its reply arrives, and an acquire loop would spin.
 */
export const MIN_LEASE_MS = 100;

/** What a backend does with the lease options; see {@link checkAcquire}. */
export interface LeaseSupport {
  /** The backend's name, for errors. */
  readonly backend: string;
  /** The default lease (`undefined`: the backend has no lease, and refuses `ttlMs`, unless it is `optional`). */
  readonly ttlMs: number | undefined;
  /** The lease is the caller's choice (in-process locks): `ttlMs` is accepted, never defaulted. */
  readonly optional?: boolean;
  /** Shortest lease accepted. @default MIN_LEASE_MS */
  readonly minTtlMs?: number;
  /** Why `ttlMs` and `autoExtend` are refused, for backends without a lease. */
  readonly noLease?: string;
  /** Extra check of a lease length (etcd: whole seconds); returns why it is refused. */
  readonly refuseTtl?: (ttlMs: number) => string | undefined;
}

/** Acquire options after validation, with defaults applied. */
export interface CheckedAcquireOptions {
  readonly ttlMs: number;
  readonly waitMs: number;
  readonly signal: AbortSignal | undefined;
  /** When `acquire` started, on the monotonic clock. */
  readonly started: number;
  /**
   * Until when a backend round trip may take (monotonic): `started +
   * waitMs`; `Infinity` for `waitMs: 0` (one attempt, ended by `signal`
   * only) and for an unbounded wait.
   */
  readonly deadline: number;
}

/** Check a lease length against what the backend can honour. */
export function checkLease(argument: string, ttlMs: unknown, lease: LeaseSupport): void {
  if (lease.ttlMs === undefined && lease.optional !== true) {
    throw new UnsupportedLockOptionError(
      lease.backend,
      argument,
      lease.noLease ?? 'has no lease',
      ttlMs,
    );
  }
  assertPositiveInteger(argument, ttlMs);
  const min = lease.minTtlMs ?? MIN_LEASE_MS;
  if (ttlMs < min) {
    throw new InvalidArgumentError(
      argument,
      `at least ${min} ms (a lease must outlast the round trip that grants it)`,
      ttlMs,
    );
  }
  if (ttlMs > MAX_TIMER_MS) {
    throw new InvalidArgumentError(
      argument,
      `at most ${MAX_TIMER_MS} ms (about 24.8 days: a lease is watched by a timer; renew a shorter one)`,
      ttlMs,
    );
  }
  const refused = lease.refuseTtl?.(ttlMs);
  if (refused !== undefined)
    throw new UnsupportedLockOptionError(lease.backend, argument, refused, ttlMs);
}

/**
 * Validate the key and the acquire options (before any I/O), refuse what the
 * backend cannot honour, and apply its default lease. Throws
 * {@link InvalidArgumentError} (or its subclass
 * {@link UnsupportedLockOptionError}), or `AbortedError` if `signal` has
 * already fired.
 */
export function checkAcquire(
  key: unknown,
  options: AcquireOptions,
  lease: LeaseSupport,
): CheckedAcquireOptions {
  const started = performance.now();
  assertNonEmptyString('key', key);
  assertPlainObject('options', options);
  const { waitMs = Number.POSITIVE_INFINITY, signal } = options;
  if (options.ttlMs !== undefined) checkLease('options.ttlMs', options.ttlMs, lease);
  if (
    options.autoExtend !== undefined &&
    options.autoExtend !== false &&
    lease.ttlMs === undefined &&
    lease.optional !== true
  ) {
    throw new UnsupportedLockOptionError(
      lease.backend,
      'options.autoExtend',
      lease.noLease ?? 'has no lease',
      options.autoExtend,
    );
  }
  if (options.onLost !== undefined) assertFunction('options.onLost', options.onLost);
  if (!(typeof waitMs === 'number' && waitMs >= 0)) {
    throw new InvalidArgumentError('options.waitMs', 'a number of ms >= 0 (or Infinity)', waitMs);
  }
  assertAbortSignal('options.signal', signal);
  throwIfAborted(signal);
  return {
    ttlMs: options.ttlMs ?? lease.ttlMs ?? Number.POSITIVE_INFINITY,
    waitMs,
    signal,
    started,
    deadline: waitMs === 0 ? Number.POSITIVE_INFINITY : started + waitMs,
  };
}

/** The round trips of one `acquire`, held to its deadline; see {@link acquireDeadline}. */
export interface AcquireDeadline {
  /** The typed error of a wait that ran out, saying why (`detail`). */
  readonly timeout: (detail: string) => LockAcquireTimeoutError;
  /**
   * Race one backend call against the deadline and signal: its answer, or
   * {@link LockAcquireTimeoutError} (`detail`) / `AbortedError` on time; a
   * reply that comes later goes to `late` (to release a late grant); a call
   * that fails without an answer runs `unknown` (to release, by owner, a
   * grant the server may still make: see `undoUnknownOutcome`).
   */
  readonly beforeDeadline: <T>(
    call: Promise<T>,
    detail: string,
    late?: (value: T) => unknown,
    unknown?: () => Promise<unknown>,
  ) => Promise<T>;
}

/**
 * The deadline of one `acquire` on `key`, for every round trip it makes:
 * one place where a backend's calls meet `waitMs` and `signal`.
 *
 * @example
 * ```ts
 * const checked = checkAcquire(key, options, lease);
 * const { beforeDeadline, timeout } = acquireDeadline(key, checked);
 * const reply = await beforeDeadline(send(), 'Redis did not answer in time', (late) => release(late));
 * ```
 */
export function acquireDeadline(key: string, checked: CheckedAcquireOptions): AcquireDeadline {
  const timeout = (detail: string): LockAcquireTimeoutError =>
    new LockAcquireTimeoutError(key, performance.now() - checked.started, detail);
  return {
    timeout,
    beforeDeadline: (call, detail, late, unknown) =>
      within(call, {
        deadline: checked.deadline,
        signal: checked.signal,
        timeout: () => timeout(detail),
        late,
        unknown,
      }),
  };
}

/**
 * Refuse, at construction, options a backend does not have: a name from
 * another backend (`pollMs` on a lock that waits by watch) or a misspelling
 * would otherwise be ignored. `why` explains the known refusals.
 */
export function checkOptionNames(
  backend: string,
  options: object,
  allowed: readonly string[],
  why: Readonly<Record<string, string>> = {},
): void {
  const unknown = unknownOption(options, allowed);
  if (unknown === undefined) return;
  const [name, value] = unknown;
  throw new UnsupportedLockOptionError(
    backend,
    `options.${name}`,
    why[name] ?? `has no such option (it takes ${allowed.join(', ')})`,
    value,
  );
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
