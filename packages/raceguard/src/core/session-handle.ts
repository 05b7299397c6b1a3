/**
 * The handle of a lock held by a database session (PostgreSQL advisory
 * locks, MySQL `GET_LOCK`): no lease, the session's connection kept for the
 * lock's life, loss when that connection fails, release on the same
 * connection (or by ending the session when it cannot answer).
 */
import { InvalidArgumentError } from './errors.js';
import { LockNotOwnerError, type AcquireOptions, type LockHandle } from './lock.js';
import { LockLoss } from './lock-loss.js';

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
  /** Calls `onFailure` when the session's connection fails; returns the undo. */
  watch(onFailure: () => void): () => void;
  /** Releases the lock on its session and returns the connection to the pool. */
  unlock(): Promise<void>;
  /** Ends the session (it frees whatever it holds). */
  destroy(cause?: unknown): void;
  /** Whether the session still holds the lock (throws if it cannot answer). */
  stillHeld(): Promise<boolean>;
}

/**
 * Build a {@link LockHandle} over a lock held by a session. `release()` is
 * idempotent; a session that cannot unlock is ended instead.
 */
export function createSessionHandle(options: SessionHandleOptions): LockHandle {
  const { key } = options;
  const loss = new LockLoss(key, options.acquireOptions.onLost, options.backend);
  let released: Promise<void> | undefined;
  const unwatch = options.watch(() => loss.lose('backend'));
  const release = (): Promise<void> =>
    (released ??= (async () => {
      const wasHeld = loss.end();
      unwatch();
      if (!wasHeld) return options.destroy();
      try {
        await options.unlock();
      } catch (error) {
        options.destroy(error); // the session is unusable: ending it frees its locks
      }
    })());
  return {
    key,
    token: options.token,
    validUntil: Number.POSITIVE_INFINITY,
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
        loss.lose('backend', error);
        throw new LockNotOwnerError(key);
      }
      if (!held) {
        loss.lose('backend');
        throw new LockNotOwnerError(key);
      }
    },
    release,
    [Symbol.asyncDispose]: release,
  };
}
