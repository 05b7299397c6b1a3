import {
  AbortedError,
  CommitOutcomeUnknownError,
  InvalidArgumentError,
  TransactionClosedError,
} from '../core/errors.js';
import { within } from '../core/deadline.js';
import { retry } from '../core/retry.js';
import { RETRY_POLICY_OPTIONS, retryOptionsOf, type RetryPolicy } from '../core/retry-policy.js';
import { assertFunction, assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { fromMysqlError, isConnectionFailure, isRetryableMysqlError } from './errors.js';
import type { MysqlPool, MysqlQueryable } from './types.js';

/** Isolation levels of InnoDB. */
export type MysqlIsolationLevel =
  'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable';

/** Options of {@link transaction}; `maxAttempts` counts runs of the whole callback. */
export interface MysqlTransactionOptions extends RetryPolicy {
  /** @default the server's (InnoDB: 'repeatable read') */
  readonly isolation?: MysqlIsolationLevel;
  /** `START TRANSACTION READ ONLY`. @default false */
  readonly readOnly?: boolean;
}

/** The transaction's connection, refusing queries once the transaction has finished. */
export type MysqlTransaction = MysqlQueryable;

const LEVELS: Record<MysqlIsolationLevel, string> = {
  'read uncommitted': 'READ UNCOMMITTED',
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

const OPTIONS = new Set(['isolation', 'readOnly', ...RETRY_POLICY_OPTIONS]);

/**
 * Runs `work` in a transaction on one pooled connection and commits it.
 * InnoDB's transient failures re-run the whole callback from the start, on
 * a fresh transaction: a deadlock (1213) has rolled everything back; a lock
 * wait timeout (1205) rolled back only the statement, so the half-done
 * transaction is rolled back here rather than continued; MariaDB's 1020 and
 * any serialization failure (40001) likewise. A connection lost during
 * COMMIT is a `CommitOutcomeUnknownError`, never retried.
 *
 * @example
 * ```ts
 * await transaction(pool, async (tx) => {
 *   const [rows] = await tx.query('SELECT balance FROM accounts WHERE id = ? FOR UPDATE', [from]);
 *   ...
 * }, { isolation: 'serializable', maxAttempts: 5 });
 * ```
 */
export async function transaction<T>(
  pool: MysqlPool,
  work: (tx: MysqlTransaction, context: { readonly attempt: number }) => Promise<T>,
  options: MysqlTransactionOptions = {},
): Promise<T> {
  if (typeof (pool as Partial<MysqlPool> | null)?.getConnection !== 'function') {
    throw new InvalidArgumentError('pool', 'a mysql2/promise pool', pool);
  }
  assertFunction('work', work);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, OPTIONS);
  if (options.isolation !== undefined && !(options.isolation in LEVELS)) {
    throw new InvalidArgumentError(
      'options.isolation',
      `one of ${Object.keys(LEVELS).join(', ')}`,
      options.isolation,
    );
  }
  const begin = `START TRANSACTION${options.readOnly === true ? ' READ ONLY' : ''}`;
  return retry(
    async ({ attempt }) => {
      // An exhausted pool makes getConnection() wait: the signal ends that
      // wait too, and a connection handed over afterwards goes back at once.
      const connection = await within(pool.getConnection(), {
        deadline: Number.POSITIVE_INFINITY,
        signal: options.signal,
        timeout: () => new AbortedError(options.signal?.reason),
        late: (late) => late.release(),
      }).catch((error: unknown) => {
        if (error instanceof AbortedError) throw error;
        throw fromMysqlError(error);
      });
      let open = true;
      let broken = false;
      const tx: MysqlTransaction = {
        query: (sql, values) => {
          if (!open) return Promise.reject(new TransactionClosedError());
          return connection.query(sql, values);
        },
      };
      const rollback = async (): Promise<void> => {
        await connection.query('ROLLBACK').catch(() => {
          broken = true;
        });
      };
      try {
        if (options.isolation !== undefined) {
          await connection.query(`SET TRANSACTION ISOLATION LEVEL ${LEVELS[options.isolation]}`);
        }
        await connection.query(begin);
        let result: T;
        try {
          result = await work(tx, { attempt });
        } catch (error) {
          open = false;
          if (isConnectionFailure(error)) broken = true;
          else await rollback();
          throw fromMysqlError(error);
        }
        open = false;
        try {
          await connection.query('COMMIT');
        } catch (error) {
          if (isConnectionFailure(error)) {
            broken = true;
            throw new CommitOutcomeUnknownError(error);
          }
          await rollback();
          throw fromMysqlError(error);
        }
        return result;
      } catch (error) {
        if (isConnectionFailure(error)) broken = true;
        throw fromMysqlError(error);
      } finally {
        open = false;
        if (broken && connection.destroy !== undefined) connection.destroy();
        else connection.release();
      }
    },
    retryOptionsOf(options, isRetryableMysqlError, 'transaction'),
  );
}
