import {
  assertKnownOptions,
  assertOneOf,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { lockEventsWanted, publishLock } from '../core/events.js';
import { InvalidArgumentError } from '../core/errors.js';
import { DatabaseError, LockTimeoutError } from './errors.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { renderConditions, runQuery, withLockTimeout } from './statements.js';
import type { Transaction } from './transaction.js';
import type { Row, SqlValue } from './types.js';

/** Row-lock strength, strongest first. */
export type RowLockMode = 'update' | 'no key update' | 'share' | 'key share';
/** What to do when a row is already locked. */
export type RowLockWait = 'wait' | 'nowait' | 'skip locked';

const MODES: readonly RowLockMode[] = ['update', 'no key update', 'share', 'key share'];
const WAITS: readonly RowLockWait[] = ['wait', 'nowait', 'skip locked'];
const MODE_SQL: Record<RowLockMode, string> = {
  update: 'FOR UPDATE',
  'no key update': 'FOR NO KEY UPDATE',
  share: 'FOR SHARE',
  'key share': 'FOR KEY SHARE',
};
const WAIT_SQL: Record<RowLockWait, string> = {
  wait: '',
  nowait: ' NOWAIT',
  'skip locked': ' SKIP LOCKED',
};

const LOCK_ROWS_OPTIONS: ReadonlySet<string> = new Set([
  'table',
  'key',
  'mode',
  'wait',
  'lockTimeoutMs',
  'orderBy',
]);

/** Options of {@link lockRows}. */
export interface LockRowsOptions {
  /** Table holding the rows. */
  readonly table: TableName;
  /**
   * The key of the rows, as every raceguard row function takes it: column
   * equalities; an array value matches any of its elements
   * (`{ id: [3, 1, 2] }`).
   */
  readonly key: Readonly<Record<string, SqlValue | readonly SqlValue[]>>;
  /**
   * Lock strength. `'no key update'` is enough when the key columns are not
   * changed, and does not block inserts of rows referencing these ones.
   * @default 'update'
   */
  readonly mode?: RowLockMode;
  /**
   * `'wait'` queues behind the current holder, `'nowait'` fails at once with
   * {@link LockTimeoutError}, `'skip locked'` returns only the rows nobody
   * holds (work queues).
   * @default 'wait'
   */
  readonly wait?: RowLockWait;
  /** With `wait: 'wait'`, fail with {@link LockTimeoutError} after this many ms. */
  readonly lockTimeoutMs?: number;
  /**
   * Columns to order by, which is also the order in which rows are locked.
   * Locking in one consistent order prevents deadlocks between transactions
   * that lock several rows.
   * @default the columns of `key`, in the order given
   */
  readonly orderBy?: readonly string[];
}

/**
 * Pessimistic locking: `SELECT * ... FOR UPDATE` (or a weaker mode) inside a
 * transaction. The locks are held until the transaction ends, so a
 * read-check-write sequence that starts with `lockRows` cannot interleave
 * with another one on the same rows. Returns the locked rows, as of after
 * the wait.
 *
 * Throws {@link LockTimeoutError} when `nowait` finds a row locked or
 * `lockTimeoutMs` passes; the transaction is then aborted and rolls back.
 *
 * @example
 * ```ts
 * await transaction(pool, async (tx) => {
 *   const [account] = await lockRows(tx, { table: 'accounts', key: { id: 1 }, lockTimeoutMs: 2000 });
 *   if (Number(account?.balance) < 100) throw new InsufficientFunds();
 *   await tx.query('UPDATE accounts SET balance = balance - 100 WHERE id = $1', [1]);
 * });
 * ```
 */
export async function lockRows(tx: Transaction, options: LockRowsOptions): Promise<Row[]> {
  if (
    typeof tx !== 'object' ||
    tx === null ||
    typeof tx.query !== 'function' ||
    typeof tx.attempt !== 'number'
  ) {
    throw new InvalidArgumentError('tx', 'a Transaction from transaction()', tx);
  }
  assertPlainObject('options', options);
  assertKnownOptions('options', options, LOCK_ROWS_OPTIONS, {
    where:
      'unset: it is called key, as on every raceguard row function (where was its name before 0.1)',
  });
  const { mode = 'update', wait = 'wait', lockTimeoutMs } = options;
  assertOneOf('options.mode', mode, MODES);
  assertOneOf('options.wait', wait, WAITS);
  if (lockTimeoutMs !== undefined) {
    assertPositiveInteger('options.lockTimeoutMs', lockTimeoutMs);
    if (wait !== 'wait') {
      throw new InvalidArgumentError(
        'options.lockTimeoutMs',
        `unset when wait is "${wait}"`,
        lockTimeoutMs,
      );
    }
  }
  const table = quoteTable(options.table);
  const values: unknown[] = [];
  const where = renderConditions('options.key', options.key, values);
  const orderColumns = options.orderBy ?? Object.keys(options.key);
  const orderBy = orderColumns
    .map((c, i) => quoteIdentifier(c, `options.orderBy[${i}]`))
    .join(', ');
  const target = `${table} ${MODE_SQL[mode]}${WAIT_SQL[wait]}`;
  const text = `SELECT * FROM ${table} WHERE ${where}${orderBy ? ` ORDER BY ${orderBy}` : ''} ${MODE_SQL[mode]}${WAIT_SQL[wait]}`;

  const started = performance.now();
  try {
    return await withLockTimeout(
      tx,
      lockTimeoutMs,
      async () => (await runQuery(tx, text, values)).rows,
    );
  } catch (error) {
    if (error instanceof DatabaseError && error.sqlState === '55P03') {
      if (lockEventsWanted())
        publishLock({
          event: 'timeout',
          backend: 'PostgresRowLock',
          key: `${Array.isArray(options.table) ? options.table.join('.') : String(options.table)}:rows`,
          waitedMs: performance.now() - started,
        });
      throw new LockTimeoutError(target, wait === 'nowait' ? 0 : lockTimeoutMs, error);
    }
    throw error;
  }
}
