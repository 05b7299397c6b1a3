/**
 * One hot row under load: the fixes of a read-check-write on a counter
 * column, written once over the lab's database handle (PostgreSQL or MySQL
 * / MariaDB), and the closed loop that drives them. `raceguard advise` and
 * `npm run bench` both run these; the lab's HTTP scenarios use the same
 * functions of `sql.ts` per request.
 */
import { InvalidArgumentError, type Locker } from 'raceguard';
import { createCombiner, type Combiner } from 'raceguard/postgres';
import { percentile } from '../run/percentile.js';
import {
  atomicDecrement,
  lockRows,
  optimisticUpdate,
  quoteName,
  quoteTableName,
  readRow,
  transaction,
  withAdvisoryLock,
  type LabKey,
  type LabPool,
} from './sql.js';

/** How an operation takes from the row. */
export type RowStrategy =
  | 'unsafe'
  | 'atomic'
  | 'pessimistic'
  | 'optimistic'
  | 'serializable'
  | 'advisory-lock'
  | 'combined';

/** Every row strategy, in report order; `combined` runs on PostgreSQL only. */
export const ROW_STRATEGIES: readonly RowStrategy[] = [
  'unsafe',
  'atomic',
  'pessimistic',
  'optimistic',
  'serializable',
  'advisory-lock',
  'combined',
];

/** The row the operations take from. */
export interface RowTarget {
  readonly table: string;
  readonly key: LabKey;
  /** The integer column taken from. */
  readonly column: string;
  /** The integer column the optimistic strategy checks and bumps. */
  readonly versionColumn: string;
}

/** What a strategy needs beyond the pool. */
export interface RowResources {
  /** MySQL: the `GET_LOCK` locker of `advisory-lock` (on a pool of its own). */
  readonly advisoryLock?: Locker;
}

/** One operation: take `amount`; resolves `true` when taken, `false` when the row had too little. */
export type RowOperation = (amount: number) => Promise<boolean>;

/** A set of operations, closed with `close()` (the combiner's queue). */
export interface RowOperations {
  readonly take: RowOperation;
  readonly read: () => Promise<unknown>;
  close(): Promise<void>;
}

/**
 * The operation of `strategy` on `target`. `unsafe` reads, then writes the
 * value it computed (the lost update, kept as the control); every other
 * strategy is one of raceguard's fixes.
 *
 * @example
 * ```ts
 * const ops = rowOperations('atomic', postgresDb(pool), { table: 'products', key: { id: 1 }, column: 'stock', versionColumn: 'version' });
 * const taken = await ops.take(1);
 * ```
 */
export function rowOperations(
  strategy: RowStrategy,
  pool: LabPool,
  target: RowTarget,
  resources: RowResources = {},
): RowOperations {
  if (!ROW_STRATEGIES.includes(strategy))
    throw new InvalidArgumentError('strategy', `one of ${ROW_STRATEGIES.join(', ')}`, strategy);
  for (const name of ['table', 'column', 'versionColumn'] as const) {
    if (typeof target[name] !== 'string' || target[name] === '')
      throw new InvalidArgumentError(`target.${name}`, 'a non-empty string', target[name]);
  }
  const { table, key, column, versionColumn } = target;
  const entries = Object.entries(key);
  const where = entries.map(([name], i) => `${quoteName(pool, name)} = $${i + 2}`).join(' AND ');
  const keyValues = entries.map(([, value]) => value);
  const write = `UPDATE ${quoteTableName(pool, table)} SET ${quoteName(pool, column)} = $1 WHERE ${where}`;
  const readThenWrite = async (
    db: Parameters<typeof readRow>[0],
    amount: number,
    locked?: Record<string, unknown>,
  ): Promise<boolean> => {
    const row = locked ?? (await readRow(db, table, key));
    const value = Number(row?.[column]);
    if (!(value >= amount)) return false;
    await db.query(write, [value - amount, ...keyValues]);
    return true;
  };
  const read = () => readRow(pool, table, key);
  const done = { read, close: () => Promise.resolve() };
  switch (strategy) {
    case 'unsafe':
      return { ...done, take: (amount) => readThenWrite(pool, amount) };
    case 'atomic':
      return {
        ...done,
        take: async (amount) =>
          (await atomicDecrement(pool, { table, key, column, amount })).applied,
      };
    case 'pessimistic':
      return {
        ...done,
        take: (amount) =>
          transaction(pool, async (tx) => {
            const [row] = await lockRows(tx, { table, key });
            return row === undefined ? false : readThenWrite(tx, amount, row);
          }),
      };
    case 'optimistic':
      return {
        ...done,
        take: async (amount) =>
          (
            await optimisticUpdate(pool, {
              table,
              key,
              versionColumn,
              maxAttempts: 1000,
              maxDelayMs: 20,
              update: (row) =>
                Number(row[column]) >= amount ? { [column]: Number(row[column]) - amount } : null,
            })
          ).applied,
      };
    case 'serializable':
      return {
        ...done,
        take: (amount) =>
          transaction(pool, (tx) => readThenWrite(tx, amount), {
            isolation: 'serializable',
            maxAttempts: 1000,
            maxDelayMs: 20,
          }),
      };
    case 'advisory-lock':
      return {
        ...done,
        take: (amount) =>
          withAdvisoryLock(
            pool,
            resources.advisoryLock,
            `${table}:${JSON.stringify(key)}`,
            (tx) => readThenWrite(tx, amount),
            { maxAttempts: 1000, maxDelayMs: 20 },
          ),
      };
    case 'combined': {
      if (pool.dialect !== 'postgres') {
        throw new Error('the combined strategy runs on PostgreSQL only');
      }
      const combiner: Combiner = createCombiner(pool.driver, {
        table,
        key: Object.keys(key),
        column,
      });
      return {
        read,
        take: async (amount) => (await combiner.apply({ key, amount })).applied,
        close: () => combiner.close(),
      };
    }
  }
}

/** Options of {@link driveRow}. */
export interface DriveOptions {
  /** Concurrent callers, each in a closed loop. */
  readonly clients: number;
  readonly durationMs: number;
  /** Fraction of operations that only read the row (0 to 1). @default 0 */
  readonly reads?: number;
  /** Taken per write. @default 1 */
  readonly amount?: number;
  readonly signal?: AbortSignal;
  /** Random numbers in [0, 1). @default Math.random */
  readonly random?: () => number;
}

/** What {@link driveRow} measured. */
export interface DriveResult {
  readonly operations: number;
  readonly opsPerSec: number;
  /** Writes that took their amount. */
  readonly taken: number;
  /** Sum of the amounts taken. */
  readonly takenAmount: number;
  /** Operations that threw, and the first error. */
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * Run `operations` from `clients` closed-loop callers for `durationMs`.
 *
 * @example
 * ```ts
 * const run = await driveRow(rowOperations('atomic', db, target), { clients: 64, durationMs: 2000, reads: 0.2 });
 * console.log(run.opsPerSec, run.p99Ms);
 * ```
 */
export async function driveRow(
  operations: RowOperations,
  options: DriveOptions,
): Promise<DriveResult> {
  const { clients, durationMs, reads = 0, amount = 1, signal } = options;
  if (!Number.isSafeInteger(clients) || clients < 1)
    throw new InvalidArgumentError('options.clients', 'a positive integer', clients);
  if (!(durationMs > 0))
    throw new InvalidArgumentError('options.durationMs', 'a positive number', durationMs);
  if (!(reads >= 0 && reads < 1))
    throw new InvalidArgumentError('options.reads', 'a fraction from 0 to below 1', reads);
  if (!Number.isSafeInteger(amount) || amount < 1)
    throw new InvalidArgumentError('options.amount', 'a positive integer', amount);
  const random = options.random ?? Math.random;
  const latencies: number[] = [];
  let taken = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const until = started + durationMs;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until && signal?.aborted !== true) {
        const begun = performance.now();
        try {
          if (random() < reads) await operations.read();
          else if (await operations.take(amount)) taken += 1;
        } catch (error) {
          errors += 1;
          firstError ??= error instanceof Error ? error.message : String(error);
        }
        latencies.push(performance.now() - begun);
      }
    }),
  );
  const elapsed = performance.now() - started;
  return {
    operations: latencies.length,
    opsPerSec: (latencies.length * 1000) / elapsed,
    taken,
    takenAmount: taken * amount,
    errors,
    firstError,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}
