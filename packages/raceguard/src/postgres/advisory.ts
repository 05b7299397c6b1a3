import { createHash } from 'node:crypto';
import {
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { InvalidArgumentError } from '../core/errors.js';
import { DatabaseError, LockTimeoutError } from './errors.js';
import { runQuery, withLockTimeout } from './statements.js';
import { transaction, type Transaction, type TransactionOptions } from './transaction.js';
import type { PoolLike } from './types.js';

/**
 * Map a string key to the signed 64-bit integer PostgreSQL advisory locks
 * take: the first 8 bytes of its SHA-256 digest.
 *
 * Collisions: two different keys share a lock with probability about
 * n² / 2^65 for n keys in use at once (about 1 in 3.7·10^12 for ten thousand
 * concurrent keys). A collision is never unsafe, it only makes two unrelated
 * critical sections wait for each other. Advisory lock numbers are shared by
 * everything that uses `pg_advisory_lock(bigint)` in the same database; the
 * hash makes accidental clashes with hand-picked small numbers unlikely.
 *
 * @example
 * ```ts
 * advisoryLockKey('inventory:product:42'); // -> 64-bit bigint, same on every process
 * ```
 */
export function advisoryLockKey(key: string): bigint {
  assertNonEmptyString('key', key);
  return createHash('sha256').update(key, 'utf8').digest().readBigInt64BE(0);
}

function assertTransaction(tx: unknown): asserts tx is Transaction {
  if (
    typeof tx !== 'object' ||
    tx === null ||
    typeof (tx as Transaction).query !== 'function' ||
    typeof (tx as Transaction).attempt !== 'number'
  ) {
    throw new InvalidArgumentError('tx', 'a Transaction from transaction()', tx);
  }
}

/** Options of {@link advisoryXactLock}. */
export interface AdvisoryLockOptions {
  /** Give up with {@link LockTimeoutError} after this many ms. Waits indefinitely when unset. */
  readonly lockTimeoutMs?: number;
  /**
   * Take the shared form: any number of shared holders, excluding exclusive ones.
   * @default false
   */
  readonly shared?: boolean;
}

/**
 * Take a transaction-scoped advisory lock on a string key
 * (`pg_advisory_xact_lock`), waiting for it if another transaction holds it.
 * It is released by COMMIT or ROLLBACK, never explicitly, so it cannot leak
 * past the transaction, and it works through transaction-mode poolers such
 * as PgBouncer.
 *
 * @example
 * ```ts
 * await transaction(pool, async (tx) => {
 *   await advisoryXactLock(tx, `coupon:${code}`, { lockTimeoutMs: 2000 });
 *   // check-then-act on the coupon, serialized per code
 * });
 * ```
 */
export async function advisoryXactLock(
  tx: Transaction,
  key: string,
  options: AdvisoryLockOptions = {},
): Promise<void> {
  assertTransaction(tx);
  const id = advisoryLockKey(key);
  assertPlainObject('options', options);
  const { lockTimeoutMs, shared = false } = options;
  if (lockTimeoutMs !== undefined) assertPositiveInteger('options.lockTimeoutMs', lockTimeoutMs);
  const fn = shared ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock';
  try {
    await withLockTimeout(tx, lockTimeoutMs, () =>
      runQuery(tx, `SELECT ${fn}($1::bigint)`, [id.toString()]),
    );
  } catch (error) {
    if (error instanceof DatabaseError && error.sqlState === '55P03') {
      throw new LockTimeoutError(`advisory lock ${JSON.stringify(key)}`, lockTimeoutMs, error);
    }
    throw error;
  }
}

/**
 * Try to take a transaction-scoped advisory lock without waiting
 * (`pg_try_advisory_xact_lock`). Resolves `true` if this transaction now
 * holds it, `false` if another one does.
 *
 * @example
 * ```ts
 * await transaction(pool, async (tx) => {
 *   if (!(await tryAdvisoryXactLock(tx, 'nightly-report'))) return; // someone else is on it
 *   await buildReport(tx);
 * });
 * ```
 */
export async function tryAdvisoryXactLock(
  tx: Transaction,
  key: string,
  options: Pick<AdvisoryLockOptions, 'shared'> = {},
): Promise<boolean> {
  assertTransaction(tx);
  const id = advisoryLockKey(key);
  const fn =
    options.shared === true ? 'pg_try_advisory_xact_lock_shared' : 'pg_try_advisory_xact_lock';
  const { rows } = await runQuery(tx, `SELECT ${fn}($1::bigint) AS locked`, [id.toString()]);
  return rows[0]?.locked === true;
}

/**
 * Run `fn` in a transaction that first takes the advisory lock for `key`:
 * the whole callback is a critical section per key, across every process
 * connected to the same database.
 *
 * @example
 * ```ts
 * const seat = await withAdvisoryLock(pool, `seat:${seatId}`, async (tx) => {
 *   const { rows } = await tx.query('SELECT booked_by FROM seats WHERE id = $1', [seatId]);
 *   if (rows[0]?.booked_by !== null) throw new SeatTaken();
 *   await tx.query('UPDATE seats SET booked_by = $2 WHERE id = $1', [seatId, userId]);
 * }, { lockTimeoutMs: 5000 });
 * ```
 */
export async function withAdvisoryLock<T>(
  pool: PoolLike,
  key: string,
  fn: (tx: Transaction) => Promise<T>,
  options: TransactionOptions & Pick<AdvisoryLockOptions, 'shared'> = {},
): Promise<T> {
  advisoryLockKey(key);
  const { shared, lockTimeoutMs, ...txOptions } = options;
  return transaction(
    pool,
    async (tx) => {
      await advisoryXactLock(tx, key, {
        ...(lockTimeoutMs !== undefined && { lockTimeoutMs }),
        ...(shared !== undefined && { shared }),
      });
      return fn(tx);
    },
    txOptions,
  );
}
