/**
 * The hot-row combiner: concurrent decrements (or increments) of the same
 * row within one process are gathered and applied by one guarded statement
 * that grants, in arrival order, every request the row allows, exactly as
 * if they had run one by one. One row lock and one commit serve a whole
 * batch instead of one request.
 */
import {
  BatchDeadlineError,
  BatcherClosedError,
  KeyedBatcher,
  type BatcherOptions,
} from '../core/batcher.js';
import { CommitOutcomeUnknownError, InvalidArgumentError, rejection } from '../core/errors.js';
import {
  assertAbortSignal,
  assertKnownOptions,
  assertNonNegativeInteger,
  assertPlainObject,
  assertPositiveInteger,
  assertSafeInteger,
} from '../core/validate.js';
import { ConnectionError, fromDriverError } from './errors.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { statementName } from './statements.js';
import type { PoolClientLike, PoolLike, SqlValue } from './types.js';

export { BatchDeadlineError, BatcherClosedError };

/** Options of {@link createCombiner}. */
export interface CombinerOptions {
  /** The table holding the hot rows. */
  readonly table: TableName;
  /** The columns that identify one row, e.g. `['id']`; each request names their values. */
  readonly key: readonly string[];
  /** The integer column requests take from (or add to). */
  readonly column: string;
  /** `decrement` takes `amount` (stock, balances); `increment` adds it (a coupon's redemptions). @default 'decrement' */
  readonly direction?: 'decrement' | 'increment';
  /** Decrement: the column never goes below this. @default 0 */
  readonly floor?: number;
  /** Increment: the column never goes above this constant. */
  readonly ceiling?: number;
  /** Increment: the column never goes above the value of this other column of the row (a cap stored with the data). */
  readonly ceilingColumn?: string;
  /**
   * Durable mode: every granted request also inserts one row into this
   * table (an order, a ledger entry) in the same statement, from the
   * request's `record`, whose keys must be exactly `columns`.
   */
  readonly record?: { readonly table: TableName; readonly columns: readonly string[] };
  /** Most requests in one statement. @default 500 */
  readonly maxBatch?: number;
  /**
   * How long a request on an idle row waits for others before its batch is
   * sent; 0 waits one turn of the event loop. Requests that arrive while a
   * batch runs go in the next one as soon as it returns. @default 0
   */
  readonly maxWaitMs?: number;
  /** Default of each request's `deadlineMs`. @default 10000 */
  readonly deadlineMs?: number;
  /** Send the statement as a named prepared statement (parsed once per connection). @default true */
  readonly prepare?: boolean;
}

/** One request to a {@link Combiner}. */
export interface CombinerRequest {
  /** The row: a value for each of the combiner's `key` columns. */
  readonly key: Readonly<Record<string, SqlValue>>;
  /** How much to take (or add): a positive safe integer. */
  readonly amount: number;
  /** Durable mode: the row to insert when this request is granted (keys: the `record.columns`). */
  readonly record?: Readonly<Record<string, unknown>>;
  /**
   * Aborts the request while it waits for its batch (it is removed and
   * rejected with `AbortedError`; nothing of it is applied). Once its batch
   * is sent, the request reports the batch's outcome, applied or not.
   */
  readonly signal?: AbortSignal;
  /** Milliseconds the request may wait to be sent before `BatchDeadlineError`. @default the combiner's `deadlineMs` */
  readonly deadlineMs?: number;
}

/** Where a request sat: its batch's size and its position in it. */
export interface CombinedBatch {
  /** Identifies the batch among this combiner's batches (1, 2, ...). */
  readonly id: number;
  /** Requests in the statement that served this one. */
  readonly size: number;
  /** 0-based position in that batch (arrival order). */
  readonly position: number;
}

/** The outcome of one request, exactly as if the requests had run one by one in arrival order. */
export type CombinedResult =
  /** Granted: `value` is the column right after this request. */
  | { readonly applied: true; readonly value: number; readonly batch: CombinedBatch }
  /** The bound would have been crossed at this request's turn; `current` is the column then. */
  | {
      readonly applied: false;
      readonly reason: 'limit';
      readonly current: number;
      readonly batch: CombinedBatch;
    }
  | { readonly applied: false; readonly reason: 'not-found'; readonly batch: CombinedBatch };

/** A combiner made by {@link createCombiner}. */
export interface Combiner extends AsyncDisposable {
  /** Take (or add) `amount` on the row `key`, combined with the concurrent requests on that row. */
  apply(request: CombinerRequest): Promise<CombinedResult>;
  /** Requests waiting to be sent. */
  readonly pending: number;
  /** Refuse new requests, reject the queued ones (`BatcherClosedError`), wait for the batches in flight. */
  close(): Promise<void>;
}

const OPTIONS = new Set([
  'table',
  'key',
  'column',
  'direction',
  'floor',
  'ceiling',
  'ceilingColumn',
  'record',
  'maxBatch',
  'maxWaitMs',
  'deadlineMs',
  'prepare',
]);
const REQUEST = new Set(['key', 'amount', 'record', 'signal', 'deadlineMs']);

/**
 * A hot-row combiner on PostgreSQL. Concurrent requests on one row in this
 * process are gathered (one batch in flight per row; the next one gathers
 * while it runs) and applied by one statement: it locks the row, walks the
 * requests in arrival order granting each that keeps the column within its
 * bound (a request too large is refused and a smaller one after it may
 * still be granted, as one by one), writes the final value, and in durable
 * mode inserts one row per granted request, all in one autocommit
 * transaction. Across processes each batch is still one atomic conditional
 * statement under the row lock, so exactness holds there too.
 *
 * @example
 * ```ts
 * const stock = createCombiner(pool, { table: 'products', key: ['id'], column: 'stock' });
 * const r = await stock.apply({ key: { id: 1 }, amount: 1 });
 * if (!r.applied) return reply.code(409).send({ error: 'sold out' });
 * ```
 */
export function createCombiner(pool: PoolLike, options: CombinerOptions): Combiner {
  if (typeof pool !== 'object' || pool === null || typeof pool.connect !== 'function') {
    throw new InvalidArgumentError('pool', 'a pg Pool', pool);
  }
  assertPlainObject('options', options);
  assertKnownOptions('options', options, OPTIONS);
  const direction = options.direction ?? 'decrement';
  if (direction !== 'decrement' && direction !== 'increment') {
    throw new InvalidArgumentError('options.direction', "'decrement' or 'increment'", direction);
  }
  const keyColumns = columnList('options.key', options.key);
  if (new Set(keyColumns).size !== keyColumns.length) {
    throw new InvalidArgumentError('options.key', 'distinct column names', options.key);
  }
  if (direction === 'decrement') {
    if (options.ceiling !== undefined || options.ceilingColumn !== undefined) {
      throw new InvalidArgumentError(
        'options.ceiling',
        "unset when direction is 'decrement' (use floor)",
        options.ceiling ?? options.ceilingColumn,
      );
    }
    if (options.floor !== undefined) assertSafeInteger('options.floor', options.floor);
  } else {
    if (options.floor !== undefined) {
      throw new InvalidArgumentError(
        'options.floor',
        "unset when direction is 'increment' (use ceiling or ceilingColumn)",
        options.floor,
      );
    }
    if (options.ceiling !== undefined && options.ceilingColumn !== undefined) {
      throw new InvalidArgumentError(
        'options.ceilingColumn',
        'unset when ceiling is set (one bound)',
        options.ceilingColumn,
      );
    }
    if (options.ceiling !== undefined) assertSafeInteger('options.ceiling', options.ceiling);
  }
  const maxBatch = options.maxBatch ?? 500;
  assertPositiveInteger('options.maxBatch', maxBatch);
  if (maxBatch > 10_000)
    throw new InvalidArgumentError('options.maxBatch', 'at most 10000', maxBatch);
  const maxWaitMs = options.maxWaitMs ?? 0;
  assertNonNegativeInteger('options.maxWaitMs', maxWaitMs);
  const defaultDeadlineMs = options.deadlineMs ?? 10_000;
  assertPositiveInteger('options.deadlineMs', defaultDeadlineMs);
  const recordColumns = checkRecord(options.record);

  const shape: StatementShape = { options, direction, keyColumns, recordColumns };
  const text = renderStatement(shape);
  const name = options.prepare === false ? undefined : statementName(text);
  const fastText = renderFastStatement(shape);
  const fastName = options.prepare === false ? undefined : statementName(fastText);
  const bound =
    direction === 'decrement'
      ? (options.floor ?? 0)
      : options.ceilingColumn === undefined
        ? (options.ceiling ?? null)
        : undefined;

  let batches = 0;
  const run = async (
    _key: string,
    items: readonly CombinerRequest[],
  ): Promise<readonly CombinedResult[]> => {
    const first = items[0] as CombinerRequest;
    const keyValues: unknown[] = keyColumns.map((column) => first.key[column]);
    const rest: unknown[] = [];
    if (bound !== undefined) rest.push(bound);
    if (recordColumns !== undefined) rest.push(JSON.stringify(items.map((item) => item.record)));
    const id = ++batches;
    // The common case first: the whole batch fits, and one plain guarded UPDATE grants it all.
    const total = items.reduce((sum, item) => sum + BigInt(item.amount), 0n);
    const fast = await runBatch(pool, fastText, [...keyValues, String(total), ...rest], fastName);
    if (fast.length === 1) return grantedAll(fast[0], items, direction, id);
    const amounts = items.map((item) => String(item.amount));
    const rows = await runBatch(pool, text, [...keyValues, amounts, ...rest], name);
    return interpret(rows, items, options.table, id);
  };
  const batcherOptions: BatcherOptions = { maxBatch, maxWaitMs };
  const batcher = new KeyedBatcher<CombinerRequest, CombinedResult>(run, batcherOptions);

  const close = (): Promise<void> => batcher.close();
  return {
    apply(request) {
      try {
        assertPlainObject('request', request);
        assertKnownOptions('request', request, REQUEST);
        assertPositiveInteger('request.amount', request.amount);
        assertAbortSignal('request.signal', request.signal);
        const deadlineMs = request.deadlineMs ?? defaultDeadlineMs;
        assertPositiveInteger('request.deadlineMs', deadlineMs);
        const batchKey = keyOf(request.key, keyColumns);
        if (recordColumns !== undefined) checkRequestRecord(request.record, recordColumns);
        else if (request.record !== undefined) {
          throw new InvalidArgumentError(
            'request.record',
            'unset: the combiner has no record table',
            request.record,
          );
        }
        return batcher.submit(batchKey, request, { signal: request.signal, deadlineMs });
      } catch (error) {
        return rejection(error);
      }
    },
    get pending() {
      return batcher.pending;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function checkRecord(record: CombinerOptions['record']): readonly string[] | undefined {
  if (record === undefined) return undefined;
  assertPlainObject('options.record', record);
  assertKnownOptions('options.record', record, new Set(['table', 'columns']));
  quoteTable(record.table, 'options.record.table');
  return columnList('options.record.columns', record.columns);
}

/** A non-empty array of column names, each checked by the identifier helper. */
function columnList(argument: string, value: unknown): readonly string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidArgumentError(argument, 'a non-empty array of column names', value);
  }
  return value.map((column: unknown, i) => {
    quoteIdentifier(column, `${argument}[${i}]`);
    return column as string;
  });
}

function checkRequestRecord(record: unknown, columns: readonly string[]): void {
  assertExactColumns('request.record', record, columns, 'the columns');
}

/** Refuse anything but an object with exactly `columns` as its keys. */
function assertExactColumns(
  argument: string,
  value: unknown,
  columns: readonly string[],
  what: string,
): asserts value is Record<string, unknown> {
  assertPlainObject(argument, value);
  const names = Object.keys(value);
  if (names.length !== columns.length || !columns.every((column) => names.includes(column))) {
    throw new InvalidArgumentError(
      argument,
      `an object with exactly ${what} ${columns.join(', ')}`,
      value,
    );
  }
}

/** The batching key of a row: its key values in column order. */
function keyOf(key: unknown, columns: readonly string[]): string {
  assertExactColumns('request.key', key, columns, 'the key columns');
  return JSON.stringify(
    columns.map((column) => {
      const value = key[column];
      if (value === null || value === undefined) {
        throw new InvalidArgumentError(`request.key.${column}`, 'a non-null value', value);
      }
      if (typeof value === 'number' && !Number.isFinite(value)) {
        throw new InvalidArgumentError(`request.key.${column}`, 'a finite number', value);
      }
      if (typeof value === 'bigint') return `${value}n`;
      if (value instanceof Date) return `d${value.toISOString()}`;
      if (value instanceof Uint8Array) return `b${Buffer.from(value).toString('hex')}`;
      return value;
    }),
  );
}

/** What both statements of a combiner are rendered from. */
interface StatementShape {
  readonly options: CombinerOptions;
  readonly direction: 'decrement' | 'increment';
  readonly keyColumns: readonly string[];
  readonly recordColumns: readonly string[] | undefined;
}

/** `alias.k1 = $1 AND alias.k2 = $2 ...`: the key columns matched against the first parameters. */
function keyMatch(keyColumns: readonly string[], alias?: string): string {
  const prefix = alias === undefined ? '' : `${alias}.`;
  return keyColumns.map((c, i) => `${prefix}${quoteIdentifier(c)} = $${i + 1}`).join(' AND ');
}

/**
 * The statement of a combiner: lock the row, walk the requests in order
 * carrying the column's value, write the final value, insert the granted
 * records; answer how many rows matched and the value and grant of each step.
 */
function renderStatement(shape: StatementShape): string {
  const { options, direction, keyColumns, recordColumns } = shape;
  const table = quoteTable(options.table);
  const column = quoteIdentifier(options.column, 'options.column');
  const where = keyMatch(keyColumns);
  const targetWhere = keyMatch(keyColumns, 't');
  let next = keyColumns.length + 1;
  const amounts = `$${next++}`;
  let boundExpression: string;
  if (direction === 'decrement' || options.ceilingColumn === undefined) {
    boundExpression = `$${next++}::bigint`;
  } else {
    boundExpression = `${quoteIdentifier(options.ceilingColumn, 'options.ceilingColumn')}::bigint`;
  }
  const ok = direction === 'decrement' ? 'w.v - r.a >= w.b' : '(w.b IS NULL OR w.v + r.a <= w.b)';
  const step = direction === 'decrement' ? 'w.v - r.a' : 'w.v + r.a';
  const insert = renderRecordInsert(
    options,
    recordColumns,
    `$${next}::jsonb`,
    'JOIN walk w ON w.o = p.ordinality WHERE w.o > 0 AND w.ok',
    true,
  );
  return `WITH RECURSIVE
  cur AS MATERIALIZED (
    SELECT ${column}::bigint AS v, ${boundExpression} AS b FROM ${table} WHERE ${where} FOR UPDATE
  ),
  matched AS MATERIALIZED (SELECT count(*)::int AS n FROM cur),
  walk(o, v, ok, b) AS (
    SELECT 0, v, true, b FROM cur WHERE (SELECT n FROM matched) = 1
    UNION ALL
    SELECT w.o + 1, CASE WHEN ${ok} THEN ${step} ELSE w.v END, ${ok}, w.b
    FROM walk w CROSS JOIN LATERAL (SELECT (${amounts}::bigint[])[w.o + 1] AS a) r
    WHERE w.o < cardinality(${amounts}::bigint[])
  ),
  fin AS (SELECT v FROM walk ORDER BY o DESC LIMIT 1),
  upd AS (
    UPDATE ${table} AS t SET ${column} = fin.v FROM fin
    WHERE ${targetWhere} AND t.${column} IS DISTINCT FROM fin.v
    RETURNING 1
  )${insert}
SELECT (SELECT n FROM matched) AS matched,
  (SELECT array_agg(v ORDER BY o) FROM walk) AS vs,
  (SELECT array_agg(ok ORDER BY o) FROM walk) AS oks`;
}

/**
 * The statement of a batch that fits as a whole: one guarded UPDATE by the
 * batch's total (refused, and then walked request by request, when the
 * total would cross the bound), and in durable mode every record inserted
 * when it applied. A key must match exactly one row.
 */
function renderFastStatement(shape: StatementShape): string {
  const { options, direction, keyColumns, recordColumns } = shape;
  const table = quoteTable(options.table);
  const column = quoteIdentifier(options.column, 'options.column');
  const targetWhere = keyMatch(keyColumns, 't');
  const countWhere = keyMatch(keyColumns, 'c');
  let next = keyColumns.length + 1;
  const total = `$${next++}::bigint`;
  let guard: string;
  if (direction === 'decrement') {
    guard = `t.${column} - ${total} >= $${next++}::bigint`;
  } else if (options.ceilingColumn === undefined) {
    const ceiling = `$${next++}::bigint`;
    guard = `(${ceiling} IS NULL OR t.${column} + ${total} <= ${ceiling})`;
  } else {
    guard = `t.${column} + ${total} <= t.${quoteIdentifier(options.ceilingColumn)}`;
  }
  const insert = renderRecordInsert(
    options,
    recordColumns,
    `$${next}::jsonb`,
    'WHERE EXISTS (SELECT 1 FROM upd)',
    false,
  );
  return `WITH upd AS (
    UPDATE ${table} AS t SET ${column} = t.${column} ${direction === 'decrement' ? '-' : '+'} ${total}
    WHERE ${targetWhere} AND ${guard} AND (SELECT count(*) FROM ${table} AS c WHERE ${countWhere}) = 1
    RETURNING t.${column}::bigint AS v
  )${insert}
SELECT v FROM upd`;
}

/**
 * The durable mode's `ins` CTE: the records (a JSON array, one per request,
 * read with the record table's own row type) inserted where `condition`
 * lets them through; empty without a record table.
 */
function renderRecordInsert(
  options: CombinerOptions,
  recordColumns: readonly string[] | undefined,
  records: string,
  condition: string,
  numbered: boolean,
): string {
  if (recordColumns === undefined) return '';
  const recordTable = quoteTable(options.record?.table, 'options.record.table');
  const list = recordColumns.map((c) => quoteIdentifier(c)).join(', ');
  const picked = recordColumns.map((c) => `p.${quoteIdentifier(c)}`).join(', ');
  return `,
  ins AS (
    INSERT INTO ${recordTable} (${list})
    SELECT ${picked}
    FROM jsonb_populate_recordset(NULL::${recordTable}, ${records})${numbered ? ' WITH ORDINALITY' : ''} AS p
    ${condition}
  )`;
}

/** Every request of a batch granted: the values follow from the final one and the amounts. */
function grantedAll(
  row: Record<string, unknown> | undefined,
  items: readonly CombinerRequest[],
  direction: 'decrement' | 'increment',
  id: number,
): CombinedResult[] {
  const sign = direction === 'decrement' ? -1 : 1;
  const total = items.reduce((sum, item) => sum + item.amount, 0);
  let value = Number(row?.v) - sign * total;
  return items.map((item, position) => {
    value += sign * item.amount;
    return { applied: true, value, batch: { id, size: items.length, position } };
  });
}

/** Run one batch on a connection of its own: a failure to connect applied nothing; a failure after sending may have. */
async function runBatch(
  pool: PoolLike,
  text: string,
  values: unknown[],
  name: string | undefined,
): Promise<Record<string, unknown>[]> {
  let client: PoolClientLike;
  try {
    client = await pool.connect();
  } catch (error) {
    throw fromDriverError(error);
  }
  try {
    const result = await (name === undefined
      ? client.query(text, values)
      : client.query({ name, text, values }));
    client.release();
    return result.rows;
  } catch (error) {
    const translated = fromDriverError(error);
    // A statement the server refused rolled back as a whole; a cut connection leaves it unknown.
    client.release(translated instanceof ConnectionError ? (error as Error) : undefined);
    if (translated instanceof ConnectionError) throw new CommitOutcomeUnknownError(error);
    throw translated;
  }
}

function interpret(
  rows: readonly Record<string, unknown>[],
  items: readonly CombinerRequest[],
  table: TableName,
  id: number,
): CombinedResult[] {
  const row = rows[0] ?? {};
  const matched = Number(row.matched);
  const size = items.length;
  if (matched > 1) {
    throw new InvalidArgumentError(
      'options.key',
      `columns that identify one row (${matched} rows of ${quoteTable(table)} matched; nothing was changed)`,
      items[0]?.key,
    );
  }
  if (matched === 0) {
    return items.map((_, position) => ({
      applied: false,
      reason: 'not-found',
      batch: { id, size, position },
    }));
  }
  const vs = row.vs as readonly (string | number)[];
  const oks = row.oks as readonly boolean[];
  return items.map((_, position) => {
    const value = Number(vs[position + 1]);
    const batch = { id, size, position };
    if (oks[position + 1] === true) return { applied: true, value, batch };
    return { applied: false, reason: 'limit', current: value, batch };
  });
}
