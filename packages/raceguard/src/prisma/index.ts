/**
 * `raceguard/prisma`: the relational fixes through Prisma Client (6 or 7,
 * with or without a driver adapter), on PostgreSQL and MySQL / MariaDB.
 * Every helper takes the client or the `tx` of an interactive transaction
 * and runs raceguard's statements through `$queryRawUnsafe` /
 * `$executeRawUnsafe` (values always bound as parameters): atomic
 * conditional updates, compare-and-set and optimistic updates on a version
 * column, row locks, and a transaction wrapper that re-runs the whole
 * callback on serialization failures, deadlocks and Prisma's P2034, which
 * Prisma itself never retries (prisma#11183).
 *
 * No Prisma package is imported: the client is typed structurally.
 *
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../core/errors.js';
import { assertFunction } from '../core/validate.js';
import { bridgeTarget, cachedTargets, type BridgeResult } from '../orm/bridge.js';
import * as relational from '../orm/relational.js';

export * from '../orm/exports.js';

/** What raceguard calls on a Prisma client or on the `tx` of an interactive transaction. */
export interface PrismaRawClient {
  $queryRawUnsafe(query: string, ...values: unknown[]): PromiseLike<unknown>;
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
}

/** A Prisma client that can open interactive transactions. */
export interface PrismaTransactionalClient<Tx> extends PrismaRawClient {
  $connect(): Promise<void>;
  $transaction<T>(
    fn: (tx: Tx) => Promise<T>,
    options?: { isolationLevel?: string; maxWait?: number; timeout?: number },
  ): Promise<T>;
}

function assertClient(argument: string, client: unknown): asserts client is PrismaRawClient {
  if (
    typeof (client as Partial<PrismaRawClient> | null)?.$queryRawUnsafe !== 'function' ||
    typeof (client as Partial<PrismaRawClient> | null)?.$executeRawUnsafe !== 'function'
  ) {
    throw new InvalidArgumentError(
      argument,
      'a Prisma client or interactive-transaction client',
      client,
    );
  }
}

/** The root client has `$connect`; Prisma removes it from interactive-transaction clients. */
const isRootClient = (client: object): boolean =>
  typeof (client as { $connect?: unknown }).$connect === 'function';

function dialectOf(client: PrismaRawClient): 'postgres' | 'mysql' {
  // Prisma keeps the schema's datasource provider on the client (and on its transaction clients).
  const provider = (client as { _activeProvider?: unknown })._activeProvider;
  if (provider === 'postgresql' || provider === 'postgres' || provider === 'cockroachdb')
    return 'postgres';
  if (provider === 'mysql') return 'mysql';
  return relational.unsupportedDialect(
    'client',
    'a Prisma client whose datasource provider is postgresql or mysql',
    provider,
  );
}

/** How long the two-statement transaction that pins a connection for LAST_INSERT_ID() may wait and run. */
const PIN_WAIT_MS = 30_000;

/** Statements that answer with rows: reads, and writes with RETURNING. */
const RETURNS_ROWS = /^\s*(?:SELECT|WITH)\b|\bRETURNING\b/i;

/**
 * Prisma reports a failed raw statement as P2010 with the server's code in
 * `meta.driverAdapterError.cause.originalCode`; raceguard's dialect modules
 * recognise the driver's shape (pg's SQLSTATE `code`, mysql2's `errno`), so
 * the failure is restated in it, the Prisma error kept as `cause`.
 */
function driverShaped(error: unknown, dialect: 'postgres' | 'mysql'): unknown {
  const original = (
    error as { meta?: { driverAdapterError?: { cause?: Record<string, unknown> } } } | null
  )?.meta?.driverAdapterError?.cause;
  const code = original?.originalCode;
  if (typeof code !== 'string') return error;
  const message =
    typeof original?.originalMessage === 'string' ? original.originalMessage : String(code);
  return dialect === 'postgres'
    ? Object.assign(new Error(message, { cause: error }), { code, severity: 'ERROR' })
    : Object.assign(new Error(message, { cause: error }), {
        errno: Number(code),
        sqlMessage: message,
      });
}

async function run(
  client: PrismaRawClient,
  dialect: 'postgres' | 'mysql',
  text: string,
  values: readonly unknown[],
): Promise<BridgeResult> {
  try {
    return await runStatement(client, dialect, text, values);
  } catch (error) {
    throw driverShaped(error, dialect);
  }
}

async function runStatement(
  client: PrismaRawClient,
  dialect: 'postgres' | 'mysql',
  text: string,
  values: readonly unknown[],
): Promise<BridgeResult> {
  if (RETURNS_ROWS.test(text)) {
    return {
      rows: (await client.$queryRawUnsafe(text, ...values)) as relational.OrmRow[],
      affectedRows: undefined,
    };
  }
  if (dialect === 'mysql' && text.includes('LAST_INSERT_ID(')) {
    // The new value of an atomic update comes back through LAST_INSERT_ID(),
    // which belongs to the connection: read it on the same one.
    const both = async (on: PrismaRawClient): Promise<BridgeResult> => {
      const affectedRows = await on.$executeRawUnsafe(text, ...values);
      const [row] = (await on.$queryRawUnsafe(
        'SELECT LAST_INSERT_ID() AS id',
      )) as relational.OrmRow[];
      return { rows: [], affectedRows, insertId: Number(row?.id) };
    };
    // Prisma's default of 2 s to get a connection for a transaction fails
    // under a burst on a small pool, where a plain statement would just queue.
    return isRootClient(client)
      ? (client as PrismaTransactionalClient<PrismaRawClient>).$transaction(both, {
          maxWait: PIN_WAIT_MS,
          timeout: PIN_WAIT_MS,
        })
      : both(client);
  }
  return { rows: [], affectedRows: await client.$executeRawUnsafe(text, ...values) };
}

/**
 * The Prisma client (or transaction client) as a {@link relational.SqlTarget}.
 *
 * @example
 * ```ts
 * const target = prismaTarget(prisma);
 * ```
 */
export const prismaTarget: (client: PrismaRawClient) => relational.SqlTarget = cachedTargets(
  (client: PrismaRawClient): relational.SqlTarget => {
    assertClient('client', client);
    const dialect = dialectOf(client);
    const target = bridgeTarget(dialect, (text, values) => run(client, dialect, text, values));
    return target;
  },
);

/** The helpers of every adapter (see {@link relational.OrmHelpers}), on prisma's database objects. */
const helpers: relational.OrmHelpers<PrismaRawClient> = relational.ormHelpers(prismaTarget);
export const { atomicDecrement, atomicIncrement, compareAndSet } = helpers;
export const { optimisticUpdate, versionedRows } = helpers;

/**
 * Locks rows for the rest of an interactive transaction and returns them.
 * Refuses the root client: the lock would end with its statement.
 *
 * @example
 * ```ts
 * await transaction(prisma, async (tx) => {
 *   const [account] = await lockRows(tx, { table: 'Account', key: { id: 1 } });
 * });
 * ```
 */
export const lockRows: (
  tx: PrismaRawClient,
  options: relational.OrmLockRowsOptions,
) => Promise<relational.OrmRow[]> = relational.lockRowsInTransaction(
  prismaTarget,
  (tx: PrismaRawClient) => !isRootClient(tx),
  {
    argument: 'tx',
    expected:
      'the client of an interactive transaction (a lock outside one ends with its statement)',
    received: 'the root Prisma client',
  },
);

const PRISMA_ISOLATION = {
  'read uncommitted': 'ReadUncommitted',
  'read committed': 'ReadCommitted',
  'repeatable read': 'RepeatableRead',
  serializable: 'Serializable',
} as const;

/**
 * Runs `fn` in `prisma.$transaction(async (tx) => ...)` (at `isolation` when
 * given) and re-runs the whole callback, with a fresh transaction, on
 * P2034 (Prisma's write conflict or deadlock), serialization failures and
 * deadlocks (PostgreSQL 40001 / 40P01, MySQL 1213 / 1205 / 1020). `fn` must
 * be safe to re-run.
 *
 * @example
 * ```ts
 * await transaction(prisma, async (tx) => {
 *   const from = await tx.account.findUniqueOrThrow({ where: { id: 1 } });
 *   await tx.account.update({ where: { id: 1 }, data: { balance: from.balance - 10 } });
 * }, { isolation: 'serializable' });
 * ```
 */
export async function transaction<Tx, T>(
  client: PrismaTransactionalClient<Tx>,
  fn: (tx: Tx, context: { readonly attempt: number }) => Promise<T>,
  options: relational.OrmTransactionOptions = {},
): Promise<T> {
  assertClient('client', client);
  if (!isRootClient(client)) {
    throw new InvalidArgumentError(
      'client',
      'the root Prisma client, not a transaction client (a nested transaction cannot be re-run on its own)',
      'a transaction client',
    );
  }
  dialectOf(client);
  assertFunction('fn', fn);
  relational.assertTransactionOptions(options);
  return relational.retryTransaction(
    (attempt) =>
      client.$transaction(
        (tx) => fn(tx, { attempt }),
        options.isolation === undefined
          ? undefined
          : { isolationLevel: PRISMA_ISOLATION[options.isolation] },
      ),
    options,
  );
}
