/**
 * The acquire of every session lock (PostgreSQL advisory locks, MySQL
 * `GET_LOCK`), written once: a connection is checked out of the pool, the
 * lock is taken in its session, a fencing token is minted, and the
 * connection stays checked out for the lock's life. A backend supplies
 * only its statements ({@link LockSession}); the deadline and `signal`,
 * the fate of the connection on every path and the handle live here.
 */
import { isAborted } from './abort.js';
import { AbortedError, messageOf } from './errors.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  acquireDeadline,
  checkAcquire,
  TryOnceLocker,
  type AcquireOptions,
  type LeaseSupport,
  type LockHandle,
} from './lock.js';
import { createSessionHandle } from './session-handle.js';

/** Races one statement against the acquire's deadline and signal. */
export type BeforeDeadline = <T>(call: Promise<T>) => Promise<T>;

/**
 * One pooled connection, and the statements of a session lock on it. Each
 * statement rejects with the driver's error; the core wraps it.
 */
export interface LockSession {
  /**
   * Take the lock in this session: once (`waitMs` 0) or waiting in the
   * server up to `remainingMs` (`Infinity`: no limit). Resolves `false`
   * when another session holds it (or still did when the wait ran out).
   */
  lock(waitMs: number, remainingMs: number, beforeDeadline: BeforeDeadline): Promise<boolean>;
  /** Mint the grant's fencing token. */
  mintToken(beforeDeadline: BeforeDeadline): Promise<bigint>;
  /** Calls `onFailure` when the connection fails; returns the undo. */
  watch(onFailure: () => void): () => void;
  /** Release the lock on its session (the connection stays checked out). */
  unlock(): Promise<void>;
  /** Whether the session still holds the lock. */
  stillHeld(): Promise<boolean>;
  /** Return the connection to the pool, in a clean state. */
  giveBack(): void;
  /** End the session (the server then frees whatever it holds); the pool drops the connection. */
  destroy(cause?: unknown): void;
}

/** A session lock backend, as {@link acquireSessionLock} needs it. */
export interface SessionLockProtocol {
  /** `ttlMs: undefined` and the reason (`noLease`); `backend` names the locker in errors and events. */
  readonly lease: LeaseSupport & { readonly noLease: string };
  /** The server's name in error messages: `PostgreSQL`, `MySQL`. */
  readonly server: string;
  /** Check a connection out of the pool, for the lock on `key`. */
  connect(key: string): Promise<LockSession>;
}

/**
 * Wait up to `options.waitMs` for the session lock on `key`.
 *
 * - The wait happens in the server (its lock queue), on a connection held
 *   for the lock's life.
 * - Until the grant, a connection in an unknown state (a wait that ended
 *   early, a failed statement) is destroyed, never returned to the pool: a
 *   session still waiting in the server must not be reused.
 * - A connection checked out after the caller gave up goes straight back.
 *
 * Rejects with `LockAcquireTimeoutError`, `AbortedError` or
 * `LockBackendError`; invalid options reject before any I/O.
 */
export async function acquireSessionLock(
  protocol: SessionLockProtocol,
  key: string,
  options: AcquireOptions,
): Promise<LockHandle> {
  const checked = checkAcquire(key, options, protocol.lease);
  const { waitMs, signal, started, deadline } = checked;
  const { beforeDeadline } = acquireDeadline(key, checked);
  const { server } = protocol;
  let session: LockSession;
  try {
    session = await beforeDeadline(protocol.connect(key), 'no pool connection in time', (late) =>
      late.giveBack(),
    );
  } catch (error) {
    if (error instanceof LockAcquireTimeoutError || error instanceof AbortedError) throw error;
    throw new LockBackendError(`${server} failed to connect: ${messageOf(error)}`, error);
  }
  // Until granted, a connection in an unknown state is destroyed, never returned to the pool.
  let outcome: 'granted' | 'clean' | 'destroy' = 'destroy';
  const inTime: BeforeDeadline = (call) => beforeDeadline(call, `${server} did not answer in time`);
  try {
    if (!(await session.lock(waitMs, deadline - performance.now(), inTime))) {
      outcome = 'clean';
      throw new LockAcquireTimeoutError(
        key,
        performance.now() - started,
        'held by another session',
      );
    }
    const token = await session.mintToken(inTime);
    if (isAborted(signal)) throw new AbortedError(signal?.reason);
    outcome = 'granted';
    return sessionHandle(protocol, session, key, token, options);
  } catch (error) {
    if (error instanceof LockAcquireTimeoutError || error instanceof AbortedError) throw error;
    throw error instanceof LockBackendError
      ? error
      : new LockBackendError(`${server} failed to acquire a lock: ${messageOf(error)}`, error);
  } finally {
    // Destroying the connection also ends its wait on the server and frees whatever it holds.
    if (outcome === 'clean') session.giveBack();
    else if (outcome === 'destroy') session.destroy(new Error('raceguard: lock wait abandoned'));
  }
}

/** The handle of a lock `session` holds. */
function sessionHandle(
  protocol: SessionLockProtocol,
  session: LockSession,
  key: string,
  token: bigint,
  options: AcquireOptions,
): LockHandle {
  const { backend, noLease } = protocol.lease;
  return createSessionHandle({
    backend,
    key,
    token,
    acquireOptions: options,
    noLease: `${backend} ${noLease}`,
    watch: (events) => session.watch(() => events.lose('backend')),
    end: async (wasHeld) => {
      if (!wasHeld) return session.destroy();
      try {
        await session.unlock();
        session.giveBack();
      } catch (error) {
        session.destroy(error); // the session is unusable: ending it frees its locks
      }
    },
    stillHeld: () => session.stillHeld(),
  });
}

/**
 * The base of every session locker: `acquire` and `tryAcquire` over
 * {@link acquireSessionLock}. A new session backend extends it and supplies
 * `connect` (a pooled connection and its statements); it must then pass the
 * shared lock contract suite (`test/locks/contract.ts`).
 */
export abstract class SessionLocker extends TryOnceLocker {
  readonly #protocol: SessionLockProtocol;

  protected constructor(settings: Omit<SessionLockProtocol, 'connect'>) {
    super();
    this.#protocol = { ...settings, connect: (key) => this.connect(key) };
  }

  /** Check a connection out of the pool for the lock on `key`. */
  protected abstract connect(key: string): Promise<LockSession>;

  /**
   * Wait (up to `waitMs`) in the server's queue for the lock on `key`.
   *
   * @example
   * ```ts
   * await using lock = await locks.acquire('rebuild-index', { waitMs: 5000 });
   * ```
   */
  acquire(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return acquireSessionLock(this.#protocol, key, options);
  }
}
