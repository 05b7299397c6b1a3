import { InvalidArgumentError } from '../core/errors.js';
import { lockEventsWanted, publishLock } from '../core/events.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { MYSQL_ERRORS, MysqlLockTimeoutError } from './errors.js';
import { quoteTable, type MysqlTableName } from './identifiers.js';
import { renderConditions, selectRows } from './statements.js';
import type { MysqlKey, MysqlRow } from './types.js';
import type { MysqlTransaction } from './transaction.js';

/** `update`: exclusive (`FOR UPDATE`); `share`: readers share it (`LOCK IN SHARE MODE`, both servers). */
export type MysqlRowLockMode = 'update' | 'share';

/** `nowait` fails at once when a row is locked; `skip locked` leaves locked rows out (MySQL 8.0+, MariaDB 10.6+). */
export type MysqlRowLockWait = 'wait' | 'nowait' | 'skip locked';

/** Options of {@link lockRows}. */
export interface MysqlLockRowsOptions {
  readonly table: MysqlTableName;
  readonly key: MysqlKey;
  /** @default 'update' */
  readonly mode?: MysqlRowLockMode;
  /** @default 'wait' (up to `innodb_lock_wait_timeout`) */
  readonly wait?: MysqlRowLockWait;
}

/**
 * Reads and locks the rows matching `key` inside a transaction, until it
 * ends. A row held by someone else makes `nowait` (and a lock wait that
 * times out) reject with {@link MysqlLockTimeoutError}: the statement
 * failed; re-run the transaction rather than continue it.
 *
 * @example
 * ```ts
 * await transaction(pool, async (tx) => {
 *   const [account] = await lockRows(tx, { table: 'accounts', key: { id: 1 }, wait: 'nowait' });
 * });
 * ```
 */
export async function lockRows(
  tx: MysqlTransaction,
  options: MysqlLockRowsOptions,
): Promise<MysqlRow[]> {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, new Set(['table', 'key', 'mode', 'wait']));
  const mode = options.mode ?? 'update';
  const wait = options.wait ?? 'wait';
  if (mode !== 'update' && mode !== 'share')
    throw new InvalidArgumentError('options.mode', "'update' or 'share'", mode);
  if (wait !== 'wait' && wait !== 'nowait' && wait !== 'skip locked') {
    throw new InvalidArgumentError('options.wait', "'wait', 'nowait' or 'skip locked'", wait);
  }
  const table = quoteTable(options.table);
  const values: unknown[] = [];
  const where = renderConditions('options.key', options.key, values);
  const clause = `${mode === 'update' ? 'FOR UPDATE' : 'LOCK IN SHARE MODE'}${wait === 'wait' ? '' : wait === 'nowait' ? ' NOWAIT' : ' SKIP LOCKED'}`;
  const started = performance.now();
  try {
    return await selectRows(tx, `SELECT * FROM ${table} WHERE ${where} ${clause}`, values);
  } catch (error) {
    const errno = (error as { errno?: unknown }).errno;
    if (errno === MYSQL_ERRORS.lockWaitTimeout || errno === MYSQL_ERRORS.lockNowait) {
      if (lockEventsWanted())
        publishLock({
          event: 'timeout',
          backend: 'MysqlRowLock',
          key: `${Array.isArray(options.table) ? options.table.join('.') : String(options.table)}:rows`,
          waitedMs: performance.now() - started,
        });
      throw new MysqlLockTimeoutError(`${table} ${clause}`, error);
    }
    throw error;
  }
}
