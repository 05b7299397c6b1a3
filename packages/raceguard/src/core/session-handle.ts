/**
 * The handle of a lock held by a session rather than a lease: a database
 * session (PostgreSQL advisory locks, MySQL `GET_LOCK`) or a coordination
 * service session (a ZooKeeper ephemeral node). No lease to renew: the lock
 * lasts as long as the session, and is lost when the session ends.
 */
import { InvalidArgumentError } from './errors.js';
import {
  LockNotOwnerError,
  type AcquireOptions,
  type LockHandle,
  type LockLossReason,
} from './lock.js';
import { LockLoss } from './lock-loss.js';

/** What the session reports to its handle; see {@link SessionHandleOptions.watch}. */
export interface SessionEvents {
  /** The session ended, and the lock with it (`reason` for `LockLostError`). */
  lose(reason: LockLossReason, cause?: unknown): void;
  /**
   * The lock is known to last only until `until` (monotonic clock): a
   * disconnected session survives until its timeout. `Infinity` once the
   * session is healthy again.
   */
  holdsUntil(until: number): void;
}

/** What a session-lock backend provides to {@link createSessionHandle}. */
export interface SessionHandleOptions {
  readonly key: string;
  readonly token: bigint;
  /** The caller's acquire options (`onLost`). */
  readonly acquireOptions: AcquireOptions;
  /** The locker's name in `lost` events of the `raceguard:lock` channel. */
  readonly backend?: string;
  /** Why `extend(ttlMs)` is refused, e.g. `MysqlAdvisoryLock has no lease: ...`. */
  readonly noLease: string;
  /** Starts watching the session, reporting through `events`; returns the undo. */
  watch(events: SessionEvents): () => void;
  /**
   * Whether the session still holds the lock (`extend()`'s check). When it
   * answers `false`, the lock is reported lost for `lostReason`.
   */
  stillHeld(): Promise<boolean>;
  /** The loss reason when {@link stillHeld} answers `false`. @default 'backend' */
  readonly lostReason?: LockLossReason;
  /**
   * Whether a {@link stillHeld} that fails means the lock is lost (a broken
   * database connection: `true`) or only that the check could not be made
   * (the failure is passed on: `false`).
   * @default true
   */
  readonly failedCheckLoses?: boolean;
  /** Give the lock up on the server; `wasHeld` is `false` when it was already lost. */
  end(wasHeld: boolean): Promise<void>;
}

/**
 * Build a {@link LockHandle} over a lock held by a session. `release()` is
 * idempotent; loss is reported once (signal and `onLost`), never thrown.
 */
export function createSessionHandle(options: SessionHandleOptions): LockHandle {
  const { key } = options;
  const loss = new LockLoss(key, options.acquireOptions.onLost, options.backend);
  let validUntil = Number.POSITIVE_INFINITY;
  let released: Promise<void> | undefined;
  let unwatch: (() => void) | undefined;
  const stopWatching = (): void => {
    unwatch?.();
    unwatch = undefined;
  };
  const lose = (reason: LockLossReason, cause?: unknown): void => {
    stopWatching();
    loss.lose(reason, cause);
  };
  unwatch = options.watch({ lose, holdsUntil: (until) => (validUntil = until) });
  const release = (): Promise<void> =>
    (released ??= (async () => {
      const wasHeld = loss.end();
      stopWatching();
      await options.end(wasHeld);
    })());
  return {
    key,
    token: options.token,
    get validUntil() {
      return validUntil;
    },
    get signal() {
      return loss.signal;
    },
    extend: async (ttlMs?: number) => {
      if (ttlMs !== undefined)
        throw new InvalidArgumentError('ttlMs', `left unset: ${options.noLease}`, ttlMs);
      if (!loss.held || released !== undefined) throw new LockNotOwnerError(key);
      // No lease to renew: check that the session holding the lock is alive and still holds it.
      let held: boolean;
      try {
        held = await options.stillHeld();
      } catch (error) {
        if (options.failedCheckLoses === false) throw error;
        lose('backend', error);
        throw new LockNotOwnerError(key);
      }
      if (!held) {
        lose(options.lostReason ?? 'backend');
        throw new LockNotOwnerError(key);
      }
    },
    release,
    [Symbol.asyncDispose]: release,
  };
}
