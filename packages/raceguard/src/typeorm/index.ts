/**
 * `raceguard/typeorm`: the relational fixes through TypeORM (an optional
 * peer), on PostgreSQL and MySQL / MariaDB, and {@link saveChecked}, which
 * makes `@VersionColumn` entities actually checked on save: TypeORM
 * increments the version but its `save()` and `update()` never add
 * `WHERE version = ?` (typeorm#2848), so two concurrent saves both succeed
 * and the first one's changes silently disappear.
 *
 * @packageDocumentation
 */
import type { DataSource, EntityManager, ObjectLiteral, Repository } from 'typeorm';
import { InvalidArgumentError, OptimisticConflictError, RowNotFoundError } from '../core/errors.js';
import { assertFunction } from '../core/validate.js';
import { bridgeTarget, cachedTargets } from '../orm/bridge.js';
import * as relational from '../orm/relational.js';

export * from '../orm/exports.js';

/** A TypeORM `DataSource`, or an `EntityManager` (the transactional one inside a transaction). */
export type TypeormDatabase = DataSource | EntityManager;

function managerOf(db: unknown): EntityManager {
  const candidate = db as Partial<DataSource> & Partial<EntityManager>;
  if (typeof db === 'object' && db !== null) {
    if (typeof candidate.createQueryRunner === 'function' && candidate.manager !== undefined)
      return candidate.manager;
    if (typeof candidate.getRepository === 'function' && candidate.connection !== undefined)
      return db as EntityManager;
  }
  throw new InvalidArgumentError('db', 'a TypeORM DataSource or EntityManager', db);
}

function dialectOf(manager: EntityManager): 'postgres' | 'mysql' {
  const type = manager.connection.options.type;
  if (type === 'postgres') return 'postgres';
  if (type === 'mysql' || type === 'mariadb') return 'mysql';
  return relational.unsupportedDialect(
    'db',
    'a TypeORM data source of type postgres, mysql or mariadb',
    type,
  );
}

/** TypeORM wraps driver failures in `QueryFailedError`; raceguard classifies the driver's own. */
function unwrap(error: unknown): unknown {
  const driverError = (error as { driverError?: unknown } | null)?.driverError;
  return driverError ?? error;
}

/**
 * The data source or entity manager as a {@link relational.SqlTarget}. Statements run
 * on the manager's query runner when it has one (inside
 * `manager.transaction(...)`), else on a runner taken for the one statement.
 *
 * @example
 * ```ts
 * const target = typeormTarget(dataSource);
 * ```
 */
export const typeormTarget: (db: TypeormDatabase) => relational.SqlTarget = cachedTargets(
  (db: TypeormDatabase): relational.SqlTarget => {
    const manager = managerOf(db);
    const dialect = dialectOf(manager);
    const target = bridgeTarget(dialect, async (text, values) => {
      const own = manager.queryRunner;
      const runner = own ?? manager.connection.createQueryRunner();
      try {
        const result = await runner.query(text, [...values], true);
        const raw = result.raw as { changedRows?: number; insertId?: number } | undefined;
        const records = (result.records ?? []) as relational.OrmRow[];
        // MySQL answers a write with a result header and a read with rows; pg always with a count.
        const mysqlRead = dialect === 'mysql' && Array.isArray(result.raw);
        return {
          rows: records,
          affectedRows: mysqlRead ? undefined : result.affected,
          changedRows: dialect === 'mysql' ? raw?.changedRows : undefined,
          insertId: dialect === 'mysql' ? raw?.insertId : undefined,
        };
      } catch (error) {
        throw unwrap(error);
      } finally {
        if (own === undefined) await runner.release();
      }
    });
    return target;
  },
);

/** The helpers of every adapter (see {@link relational.OrmHelpers}), on typeorm's database objects. */
const helpers: relational.OrmHelpers<TypeormDatabase> = relational.ormHelpers(typeormTarget);
export const { atomicDecrement, atomicIncrement, compareAndSet } = helpers;
export const { optimisticUpdate, versionedRows } = helpers;

/**
 * Locks rows for the rest of a TypeORM transaction and returns them.
 * Refuses a manager outside a transaction.
 *
 * @example
 * ```ts
 * await transaction(dataSource, async (manager) => {
 *   const [account] = await lockRows(manager, { table: 'accounts', key: { id: 1 } });
 * });
 * ```
 */
export const lockRows: (
  manager: EntityManager,
  options: relational.OrmLockRowsOptions,
) => Promise<relational.OrmRow[]> = relational.lockRowsInTransaction(
  typeormTarget,
  (manager: EntityManager) => manager.queryRunner?.isTransactionActive === true,
  {
    argument: 'manager',
    expected:
      'the EntityManager of a TypeORM transaction (a lock outside one ends with its statement)',
    received: 'a manager outside a transaction',
  },
);

const TYPEORM_ISOLATION = {
  'read uncommitted': 'READ UNCOMMITTED',
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
} as const;

/**
 * Runs `fn` in `manager.transaction(...)` (at `isolation` when given) and
 * re-runs the whole callback, with a fresh transaction, on serialization
 * failures and deadlocks (PostgreSQL 40001 / 40P01, MySQL 1213 / 1205 /
 * 1020). `fn` must be safe to re-run.
 *
 * @example
 * ```ts
 * await transaction(dataSource, async (manager) => {
 *   const account = await manager.findOneByOrFail(Account, { id: 1 });
 *   await manager.update(Account, { id: 1 }, { balance: account.balance - 10 });
 * }, { isolation: 'serializable' });
 * ```
 */
export async function transaction<T>(
  db: TypeormDatabase,
  fn: (manager: EntityManager, context: { readonly attempt: number }) => Promise<T>,
  options: relational.OrmTransactionOptions = {},
): Promise<T> {
  const manager = managerOf(db);
  dialectOf(manager);
  assertFunction('fn', fn);
  relational.assertTransactionOptions(options);
  if (manager.queryRunner?.isTransactionActive === true) {
    throw new InvalidArgumentError(
      'db',
      'a DataSource or a manager outside a transaction (a nested transaction cannot be re-run on its own)',
      'a transactional EntityManager',
    );
  }
  return relational.retryTransaction(async (attempt) => {
    try {
      const work = (inner: EntityManager) => fn(inner, { attempt });
      return await (options.isolation === undefined
        ? manager.transaction(work)
        : manager.transaction(TYPEORM_ISOLATION[options.isolation], work));
    } catch (error) {
      throw unwrap(error);
    }
  }, options);
}

/**
 * Saves a loaded `@VersionColumn` entity only if nobody else saved it since
 * it was loaded: `UPDATE ... SET ..., version = version + 1 WHERE id = ? AND
 * version = ?`, then bumps the entity's version in memory. A lost race
 * throws `OptimisticConflictError` carrying the row as it is now (reload,
 * merge or tell the user); a deleted row throws `RowNotFoundError`. An
 * entity with no version yet is inserted with the repository's `save`.
 *
 * @example
 * ```ts
 * const doc = await docs.findOneByOrFail({ id });
 * doc.title = input.title;
 * await saveChecked(docs, doc); // throws OptimisticConflictError if someone saved it meanwhile
 * ```
 */
export async function saveChecked<E extends ObjectLiteral>(
  repository: Repository<E>,
  entity: E,
): Promise<E> {
  if (typeof (repository as Partial<Repository<E>> | null)?.createQueryBuilder !== 'function') {
    throw new InvalidArgumentError('repository', 'a TypeORM Repository', repository);
  }
  if (typeof entity !== 'object' || entity === null) {
    throw new InvalidArgumentError('entity', 'an entity object', entity);
  }
  const metadata = repository.metadata;
  const versionColumn = metadata.versionColumn;
  if (versionColumn === undefined) {
    throw new InvalidArgumentError(
      'repository',
      `a repository of an entity with a @VersionColumn (${metadata.name} has none)`,
      metadata.name,
    );
  }
  const loaded: unknown = versionColumn.getEntityValue(entity);
  if (loaded === undefined || loaded === null) return repository.save(entity);
  if (typeof loaded !== 'number' || !Number.isSafeInteger(loaded)) {
    throw new InvalidArgumentError(
      `entity.${versionColumn.propertyPath}`,
      'an integer version, as loaded',
      loaded,
    );
  }
  const ids = metadata.getEntityIdMap(entity);
  if (ids === undefined) {
    throw new InvalidArgumentError('entity', `an entity with its primary key set`, entity);
  }
  const changes: Record<string, unknown> = {};
  for (const column of metadata.columns) {
    if (column.isPrimary || column.isVersion || column.isCreateDate || column.isUpdateDate)
      continue;
    if (column.isVirtual || column.isGenerated) continue;
    const value: unknown = column.getEntityValue(entity);
    if (value !== undefined) changes[column.propertyPath] = value;
  }
  const started = performance.now();
  const builder = repository.createQueryBuilder().update();
  const result = await builder
    .set(changes as Parameters<typeof builder.set>[0])
    .where(ids)
    .andWhere(`${builder.escape(versionColumn.databaseName)} = :raceguardVersion`, {
      raceguardVersion: loaded,
    })
    .execute();
  if (result.affected === 0) {
    const current = await repository.findOneBy(ids as never);
    if (current === null) throw new RowNotFoundError(metadata.tableName, ids);
    throw new OptimisticConflictError(current, 1, performance.now() - started);
  }
  versionColumn.setEntityValue(entity, loaded + 1);
  return entity;
}
