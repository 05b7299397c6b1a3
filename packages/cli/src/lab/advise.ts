/**
 * `raceguard advise`: which fix of a hot row is correct and fastest on the
 * user's own row shape, contention and read/write mix. The row is copied
 * (structure and the one row) into a scratch schema or database; nothing
 * of the user's tables is written. Each candidate runs through the same row
 * workload as `npm run bench`, then the row is checked against what the
 * accepted operations took.
 */
import { InvalidArgumentError, throwIfAborted } from 'raceguard';
import { openLabDatabase } from './lab-database.js';
import { setUpLockers } from './lock-backends.js';
import {
  driveRow,
  ROW_STRATEGIES,
  rowOperations,
  type DriveResult,
  type RowStrategy,
} from './row-workload.js';
import { quoteName, quoteTableName, type LabDialect, type LabPool } from './sql.js';

/** Options of {@link advise}. */
export interface AdviseOptions {
  /** The database holding the table: postgres://... or mysql://... (its path names the MySQL database). */
  readonly databaseUrl: string;
  /** The table, optionally `schema.table` (PostgreSQL; default schema `public`) or `database.table` (MySQL). */
  readonly table: string;
  /** The row: column to value, e.g. `{ id: '42' }`. */
  readonly key: Readonly<Record<string, string>>;
  /** The integer column the workload takes from (stock, balance, remaining uses). */
  readonly column: string;
  /** Concurrent callers. @default 64 */
  readonly concurrency?: number;
  /** Fraction of operations that only read the row. @default 0 */
  readonly reads?: number;
  /** Taken per write. @default 1 */
  readonly amount?: number;
  /** How long each candidate runs. @default 2000 */
  readonly durationMs?: number;
  /** Candidates. @default every strategy that runs on the database's dialect */
  readonly strategies?: readonly RowStrategy[];
  readonly signal?: AbortSignal;
  /** Called before each candidate runs. */
  readonly onCandidate?: (strategy: RowStrategy, index: number, total: number) => void;
}

/** One candidate's outcome. */
export interface AdviceResult extends Omit<DriveResult, 'firstError'> {
  readonly strategy: RowStrategy;
  /** `correct`: the row ends exactly where the accepted operations took it, and none failed. */
  readonly verdict: 'correct' | 'wrong' | 'failed';
  /** Why a candidate is not correct. */
  readonly reason?: string;
  /** 1 for the fastest correct candidate. */
  readonly rank?: number;
}

/** What {@link advise} found. */
export interface AdviceReport {
  readonly database: LabDialect;
  readonly table: string;
  readonly column: string;
  readonly concurrency: number;
  readonly reads: number;
  readonly amount: number;
  readonly durationMs: number;
  /** Correct candidates first, fastest first; then the others. */
  readonly results: readonly AdviceResult[];
  /** The fastest correct candidate, if any. */
  readonly recommendation: RowStrategy | undefined;
  /** `true` when the table has no `version` column and the copy got one for the optimistic candidate. */
  readonly addedVersionColumn: boolean;
  /** The value the copy's column starts each candidate at (not the row's own: far from running out). */
  readonly copyStartsAt: number;
}

/** The value the copied row starts each candidate at: far from running out. */
const START = 1_000_000_000;

/**
 * Measure the candidate fixes on a copy of the user's row.
 *
 * @example
 * ```ts
 * const report = await advise({ databaseUrl, table: 'products', key: { id: '1' }, column: 'stock', concurrency: 32 });
 * console.log(report.recommendation);
 * ```
 */
export async function advise(options: AdviseOptions): Promise<AdviceReport> {
  const settings = checkAdviseOptions(options);
  const { concurrency, reads, amount, durationMs } = settings;
  const database = await openLabDatabase({
    databaseUrl: options.databaseUrl,
    ...(options.signal && { signal: options.signal }),
  });
  try {
    const dialect = database.dialect;
    const strategies = (options.strategies ?? ROW_STRATEGIES).filter(
      (s) => dialect === 'postgres' || s !== 'combined',
    );
    const pool = database.newPool(concurrency + 2);
    const source = sourceTable(dialect, options.table, options.databaseUrl);
    const copy = 'advise_row';
    const addedVersionColumn = await copyRow(pool, source, copy, options.key);
    await assertIntegerColumn(pool, copy, options.table, options.column);
    const versionColumn = addedVersionColumn ? 'raceguard_version' : 'version';
    const [lockers] = await setUpLockers(['advisory-lock'], [pool], [], () =>
      database.newPool(concurrency + 1),
    );
    const target = { table: copy, key: options.key, column: options.column, versionColumn };
    const where = Object.keys(options.key)
      .map((column, i) => `${quoteName(pool, column)} = $${i + 3}`)
      .join(' AND ');
    const reset = `UPDATE ${quoteTableName(pool, copy)} SET ${quoteName(pool, options.column)} = $1, ${quoteName(pool, versionColumn)} = $2 WHERE ${where}`;
    const measured: AdviceResult[] = [];
    for (const [index, strategy] of strategies.entries()) {
      throwIfAborted(options.signal);
      options.onCandidate?.(strategy, index, strategies.length);
      await pool.query(reset, [START, 0, ...Object.values(options.key)]);
      const operations = rowOperations(strategy, pool, target, {
        ...(lockers?.advisoryLock !== undefined && { advisoryLock: lockers.advisoryLock }),
      });
      measured.push(await measureCandidate(strategy, operations, options, settings));
    }
    const correct = measured
      .filter((r) => r.verdict === 'correct')
      .sort((a, b) => b.opsPerSec - a.opsPerSec)
      .map((r, i) => ({ ...r, rank: i + 1 }));
    const others = measured.filter((r) => r.verdict !== 'correct');
    return {
      database: dialect,
      table: options.table,
      column: options.column,
      concurrency,
      reads,
      amount,
      durationMs,
      results: [...correct, ...others],
      recommendation: correct[0]?.strategy,
      addedVersionColumn,
      copyStartsAt: START,
    };
  } finally {
    await database.close();
  }
}

/** The options of {@link advise}, checked before anything connects, with defaults. */
interface AdviseSettings {
  readonly concurrency: number;
  readonly reads: number;
  readonly amount: number;
  readonly durationMs: number;
}

function checkAdviseOptions(options: AdviseOptions): AdviseSettings {
  const concurrency = options.concurrency ?? 64;
  const reads = options.reads ?? 0;
  const amount = options.amount ?? 1;
  const durationMs = options.durationMs ?? 2000;
  if (typeof options.databaseUrl !== 'string' || options.databaseUrl === '') {
    throw new InvalidArgumentError(
      'databaseUrl',
      'a postgres:// or mysql:// URL',
      options.databaseUrl,
    );
  }
  for (const [name, value] of [
    ['table', options.table],
    ['column', options.column],
  ] as const) {
    if (typeof value !== 'string' || value === '')
      throw new InvalidArgumentError(name, 'a non-empty string', value);
  }
  if (
    typeof options.key !== 'object' ||
    options.key === null ||
    Object.keys(options.key).length === 0
  ) {
    throw new InvalidArgumentError('key', 'at least one column=value', options.key);
  }
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 1000)
    throw new InvalidArgumentError('concurrency', 'an integer from 1 to 1000', concurrency);
  if (typeof reads !== 'number' || !(reads >= 0 && reads < 1))
    throw new InvalidArgumentError('reads', 'a fraction from 0 to below 1', reads);
  if (!Number.isSafeInteger(amount) || amount < 1)
    throw new InvalidArgumentError('amount', 'a positive integer', amount);
  if (!Number.isSafeInteger(durationMs) || durationMs < 100)
    throw new InvalidArgumentError('durationMs', 'an integer of at least 100', durationMs);
  for (const strategy of options.strategies ?? []) {
    if (!ROW_STRATEGIES.includes(strategy))
      throw new InvalidArgumentError('strategy', `one of ${ROW_STRATEGIES.join(', ')}`, strategy);
  }
  return { concurrency, reads, amount, durationMs };
}

/** Drive one candidate on the copy for `durationMs`, then judge it by where the row ended. */
async function measureCandidate(
  strategy: RowStrategy,
  operations: ReturnType<typeof rowOperations>,
  options: AdviseOptions,
  { concurrency, reads, amount, durationMs }: AdviseSettings,
): Promise<AdviceResult> {
  let run: DriveResult;
  try {
    run = await driveRow(operations, {
      clients: concurrency,
      durationMs,
      reads,
      amount,
      ...(options.signal && { signal: options.signal }),
    });
  } finally {
    await operations.close();
  }
  throwIfAborted(options.signal);
  const row = (await operations.read()) as Record<string, unknown> | undefined;
  const final = Number(row?.[options.column]);
  const expected = START - run.takenAmount;
  const { firstError, ...numbers } = run;
  if (run.errors > 0) {
    return {
      strategy,
      ...numbers,
      verdict: 'failed',
      reason: `${run.errors} of ${run.operations} operations failed: ${firstError ?? 'unknown error'}`,
    };
  }
  if (final !== expected) {
    return {
      strategy,
      ...numbers,
      verdict: 'wrong',
      reason: `${describeLoss(final - expected, amount)}: the row ends at ${final}, the ${run.taken} accepted writes took it to ${expected}`,
    };
  }
  return { strategy, ...numbers, verdict: 'correct' };
}

const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint', 'tinyint', 'mediumint', 'int']);

/** The writes take from `column`: it must exist in the copy and hold integers. */
async function assertIntegerColumn(
  pool: LabPool,
  copy: string,
  table: string,
  column: string,
): Promise<void> {
  const { rows } = await pool.query(
    pool.dialect === 'postgres'
      ? 'SELECT data_type AS type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2'
      : 'SELECT DATA_TYPE AS type FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = $1 AND column_name = $2',
    [copy, column],
  );
  const found = (rows[0] as { type?: unknown } | undefined)?.type;
  if (found === undefined) {
    throw new InvalidArgumentError('column', `a column of ${table}`, column);
  }
  // MySQL may answer the type as bytes.
  const type = Buffer.isBuffer(found)
    ? found.toString('utf8')
    : typeof found === 'string'
      ? found
      : JSON.stringify(found);
  if (!INTEGER_TYPES.has(type.toLowerCase())) {
    throw new InvalidArgumentError(
      'column',
      `an integer column (the writes take from it); ${table}.${column} is ${type}`,
      column,
    );
  }
}

function describeLoss(units: number, amount: number): string {
  return units > 0
    ? `lost updates: ${units / amount} accepted write(s) left no trace`
    : `${-units / amount} write(s) more applied than accepted`;
}

/** The user's table, qualified: `public` (PostgreSQL) or the URL's database (MySQL) when unqualified. */
function sourceTable(dialect: LabDialect, table: string, url: string): readonly [string, string] {
  const dot = table.indexOf('.');
  if (dot > 0) return [table.slice(0, dot), table.slice(dot + 1)];
  if (dialect === 'postgres') return ['public', table];
  const database = decodeURIComponent(
    new URL(url.replace(/^mariadb:/i, 'mysql:')).pathname.slice(1),
  );
  if (database === '') {
    throw new InvalidArgumentError(
      'table',
      'database.table, or a database in the URL (mysql://host/shop)',
      table,
    );
  }
  return [database, table];
}

/**
 * Copy the table's structure and the one row into the scratch schema;
 * add a version column when the table has none. Answers whether it added one.
 */
async function copyRow(
  pool: LabPool,
  source: readonly [string, string],
  copy: string,
  key: Readonly<Record<string, string>>,
): Promise<boolean> {
  const from = `${quoteName(pool, source[0])}.${quoteName(pool, source[1])}`;
  const into = quoteTableName(pool, copy);
  await pool.query(
    pool.dialect === 'postgres'
      ? `CREATE TABLE ${into} (LIKE ${from} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`
      : `CREATE TABLE ${into} LIKE ${from}`,
  );
  const where = Object.keys(key)
    .map((column, i) => `${quoteName(pool, column)} = $${i + 1}`)
    .join(' AND ');
  const { rowCount } = await pool.query(
    `INSERT INTO ${into} SELECT * FROM ${from} WHERE ${where}`,
    Object.values(key),
  );
  if (rowCount !== 1) {
    throw new InvalidArgumentError(
      'key',
      `columns and values that identify one row of ${source.join('.')} (${rowCount} matched)`,
      key,
    );
  }
  const { rows } = await pool.query(`SELECT * FROM ${into}`);
  if (rows[0] !== undefined && 'version' in rows[0]) return false;
  await pool.query(
    `ALTER TABLE ${into} ADD COLUMN ${quoteName(pool, 'raceguard_version')} int NOT NULL DEFAULT 0`,
  );
  return true;
}
