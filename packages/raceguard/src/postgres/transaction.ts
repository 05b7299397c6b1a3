import { AbortedError, InvalidArgumentError } from '../core/errors.js';
import { within } from '../core/deadline.js';
import { retry } from '../core/retry.js';
import { RETRY_POLICY_OPTIONS, retryOptionsOf, type RetryPolicy } from '../core/retry-policy.js';
import {
  assertAbortSignal,
  assertFunction,
  assertKnownOptions,
  assertOneOf,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { throwIfAborted } from '../core/abort.js';
import {
  CommitOutcomeUnknownError,
  ConnectionError,
  DatabaseError,
  fromDriverError,
  isTransientConflict,
  TransactionClosedError,
  TransactionRolledBackError,
} from './errors.js';
import { assertQueryable, runQuery } from './statements.js';
import type {
  PoolClientLike,
  PoolLike,
  QueryConfigLike,
  Queryable,
  QueryResultLike,
} from './types.js';

/** SQL isolation levels PostgreSQL implements. */
export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

const ISOLATION_LEVELS: readonly IsolationLevel[] = [
  'read committed',
  'repeatable read',
  'serializable',
];
const BEGIN: Record<IsolationLevel, string> = {
  'read committed': 'BEGIN ISOLATION LEVEL READ COMMITTED',
  'repeatable read': 'BEGIN ISOLATION LEVEL REPEATABLE READ',
  serializable: 'BEGIN ISOLATION LEVEL SERIALIZABLE',
};

/**
 * A transaction in progress, handed to the callback of {@link transaction}.
 * Queries through it run on the transaction's connection; after the
 * transaction ends they are refused with {@link TransactionClosedError}.
 * Functions that only make sense inside a transaction (row locks,
 * transaction-scoped advisory locks) take a `Transaction` so the type checker
 * enforces it.
 */
export interface Transaction extends Queryable {
  /** 1-based attempt number: greater than 1 when the transaction is being re-run. */
  readonly attempt: number;
  /** The isolation level this transaction runs at. */
  readonly isolation: IsolationLevel;
  /** The caller's signal, to pass on to anything the callback waits for. */
  readonly signal: AbortSignal | undefined;
}

/**
 * Options of {@link transaction}. A serialization failure (40001) or deadlock
 * (40P01) re-runs the whole callback until `maxAttempts` run out;
 * `signal` is also handed to the callback as `tx.signal`.
 */
export interface TransactionOptions extends RetryPolicy {
  /**
   * Isolation level of every attempt.
   * @default 'read committed'
   */
  readonly isolation?: IsolationLevel;
  /**
   * Start the transaction READ ONLY.
   * @default false
   */
  readonly readOnly?: boolean;
  /** `lock_timeout` for every statement of the transaction (`SET LOCAL`). */
  readonly lockTimeoutMs?: number;
  /** `statement_timeout` for every statement of the transaction (`SET LOCAL`). */
  readonly statementTimeoutMs?: number;
}

const OPTIONS = new Set([
  'isolation',
  'readOnly',
  'lockTimeoutMs',
  'statementTimeoutMs',
  ...RETRY_POLICY_OPTIONS,
]);

class ActiveTransaction implements Transaction {
  #open = true;

  constructor(
    readonly client: PoolClientLike,
    readonly attempt: number,
    readonly isolation: IsolationLevel,
    readonly signal: AbortSignal | undefined,
  ) {}

  query(text: string, values?: unknown[]): Promise<QueryResultLike>;
  query(config: QueryConfigLike): Promise<QueryResultLike>;
  query(textOrConfig: string | QueryConfigLike, values?: unknown[]): Promise<QueryResultLike> {
    if (!this.#open) return Promise.reject(new TransactionClosedError());
    return typeof textOrConfig === 'string'
      ? runQuery(this.client, textOrConfig, values)
      : runQuery(this.client, textOrConfig.text, textOrConfig.values, textOrConfig.name);
  }

  close(): void {
    this.#open = false;
  }
}

/**
 * Run `fn` inside a database transaction and commit it; roll back if `fn`
 * throws. Serialization failures (SQLSTATE 40001) and deadlocks (40P01) roll
 * back and re-run the *whole* callback with capped exponential backoff and
 * full jitter, so `fn` must be safe to re-run (keep side effects outside the
 * database out of it). Every other failure is thrown at once.
 *
 * Failures:
 * - {@link RetryExhaustedError} when attempts or the deadline run out (`attempts`, `elapsedMs`, last cause);
 * - {@link CommitOutcomeUnknownError} when the connection dies during COMMIT (never retried);
 * - {@link TransactionRolledBackError} when COMMIT rolled back because a failed statement's error was swallowed;
 * - {@link DatabaseError}, {@link ConnectionError}, {@link PoolClosedError}, and `AbortedError` when `signal` fires.
 *
 * @example
 * ```ts
 * import pg from 'pg';
 * import { transaction } from 'raceguard/postgres';
 *
 * const pool = new pg.Pool();
 * await transaction(pool, async (tx) => {
 *   const { rows } = await tx.query('SELECT balance FROM accounts WHERE id = $1', [1]);
 *   if (Number(rows[0]?.balance) < 100) throw new Error('insufficient funds');
 *   await tx.query('UPDATE accounts SET balance = balance - 100 WHERE id = $1', [1]);
 * }, { isolation: 'serializable', maxAttempts: 10 });
 * ```
 */
export async function transaction<T>(
  pool: PoolLike,
  fn: (tx: Transaction) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  assertQueryable('pool', pool);
  const candidate = pool as { connect?: unknown; connection?: unknown; totalCount?: unknown };
  // A pg.Client has connect() too, but it opens the client's one connection, which is already open.
  const isClient = typeof candidate.connection === 'object' && candidate.totalCount === undefined;
  if (typeof candidate.connect !== 'function' || isClient) {
    throw new InvalidArgumentError(
      'pool',
      'a pg Pool (transaction() checks a connection out of it; a Client is one connection already: run BEGIN/COMMIT on it yourself, or pass the Pool)',
      pool,
    );
  }
  assertFunction('fn', fn);
  assertPlainObject('options', options);
  assertKnownOptions('options', options, OPTIONS);
  const {
    isolation = 'read committed',
    readOnly = false,
    lockTimeoutMs,
    statementTimeoutMs,
    signal,
  } = options;
  assertOneOf('options.isolation', isolation, ISOLATION_LEVELS);
  assertAbortSignal('options.signal', signal);
  if (lockTimeoutMs !== undefined) assertPositiveInteger('options.lockTimeoutMs', lockTimeoutMs);
  if (statementTimeoutMs !== undefined)
    assertPositiveInteger('options.statementTimeoutMs', statementTimeoutMs);
  throwIfAborted(signal);

  const begin = BEGIN[isolation] + (readOnly ? ' READ ONLY' : '');
  const settings: [string, string][] = [];
  if (lockTimeoutMs !== undefined) settings.push(['lock_timeout', `${lockTimeoutMs}ms`]);
  if (statementTimeoutMs !== undefined)
    settings.push(['statement_timeout', `${statementTimeoutMs}ms`]);

  const attemptOnce = async (attempt: number): Promise<T> => {
    let client: PoolClientLike;
    try {
      // An exhausted pool makes connect() wait: the signal ends that wait
      // too, and a connection handed over afterwards goes back at once.
      client = await within(pool.connect(), {
        deadline: Number.POSITIVE_INFINITY,
        signal,
        timeout: () => new AbortedError(signal?.reason),
        late: (late) => late.release(),
      });
    } catch (error) {
      if (error instanceof AbortedError) throw error;
      throw fromDriverError(error);
    }
    // A connection that failed mid-transaction is destroyed, not returned to the pool.
    let broken: Error | undefined;
    try {
      await runQuery(client, begin);
      for (const [name, value] of settings) {
        await runQuery(client, 'SELECT set_config($1, $2, true)', [name, value]);
      }
      const tx = new ActiveTransaction(client, attempt, isolation, signal);
      let result: T;
      try {
        result = await fn(tx);
      } catch (error) {
        tx.close();
        try {
          await runQuery(client, 'ROLLBACK');
        } catch (rollbackError) {
          broken =
            rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        }
        throw error;
      }
      tx.close();
      let commit: QueryResultLike;
      try {
        commit = await client.query('COMMIT');
      } catch (error) {
        const mapped = fromDriverError(error);
        // The server answered: the transaction is rolled back and the
        // error (a serialization failure at commit, a deferred constraint) is definite.
        if (mapped instanceof DatabaseError) throw mapped;
        broken = mapped instanceof Error ? mapped : new Error(String(mapped));
        throw new CommitOutcomeUnknownError(mapped);
      }
      if (commit.command === 'ROLLBACK') throw new TransactionRolledBackError();
      return result;
    } catch (error) {
      if (error instanceof ConnectionError && broken === undefined) broken = error;
      throw error;
    } finally {
      client.release(broken);
    }
  };

  return retry(
    ({ attempt }) => attemptOnce(attempt),
    retryOptionsOf(options, isTransientConflict, 'transaction'),
  );
}
