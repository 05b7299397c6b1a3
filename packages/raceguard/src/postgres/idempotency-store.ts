/** Idempotency records in a PostgreSQL table. */
import { createOnce } from './ddl.js';
import { InvalidArgumentError } from '../core/errors.js';
import {
  assertFunction,
  assertKnownOptions,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { IdempotencyClaimLostError, IdempotencyStoreError } from '../idempotency/errors.js';
import {
  claimIdempotency,
  DEFAULT_TTL_MS,
  serializeResult,
  type IdempotencyOptions,
  type IdempotentResult,
} from '../idempotency/idempotent.js';
import {
  reapInBatches,
  type ClaimRequest,
  type ClaimResult,
  type IdempotencyStore,
  type OwnerRequest,
  type ReapOptions,
} from '../idempotency/store.js';
import { quoteIdentifier, quoteTable, type TableName } from './identifiers.js';
import { assertQueryable, runQuery, statementName } from './statements.js';
import { transaction, type Transaction, type TransactionOptions } from './transaction.js';
import type { PoolLike, Queryable } from './types.js';

/** Options of {@link createIdempotencyTable} and {@link PostgresIdempotencyStore}. */
export interface IdempotencyTableOptions {
  /** The records table. @default 'raceguard_idempotency' */
  readonly table?: TableName;
}

const DEFAULT_TABLE = 'raceguard_idempotency';

function tableNames(options: IdempotencyTableOptions): { table: string; index: string } {
  const name = options.table ?? DEFAULT_TABLE;
  const bare = typeof name === 'string' ? name : name[1];
  return {
    table: quoteTable(name, 'options.table'),
    index: quoteIdentifier(`${bare}_expires_at`, 'options.table'),
  };
}

/**
 * Create the idempotency records table and its expiry index, if missing.
 * Idempotent: run it from a migration or at start-up.
 *
 * @example
 * ```ts
 * await createIdempotencyTable(pool);
 * const store = new PostgresIdempotencyStore({ client: pool });
 * ```
 */
export async function createIdempotencyTable(
  db: Queryable,
  options: IdempotencyTableOptions = {},
): Promise<void> {
  assertQueryable('db', db);
  assertPlainObject('options', options);
  const { table, index } = tableNames(options);
  await createOnce(db, `raceguard:ddl:${table}`, [
    `CREATE TABLE IF NOT EXISTS ${table} (
      scope text NOT NULL,
      key text NOT NULL,
      fingerprint text NOT NULL,
      owner text,
      lease_until timestamptz,
      attempts integer NOT NULL DEFAULT 1,
      recovery_point text,
      result text,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (scope, key)
    )`,
    `CREATE INDEX IF NOT EXISTS ${index} ON ${table} (expires_at)`,
  ]);
}

/** A record a completer can resume. */
export interface AbandonedRecord {
  readonly scope: string;
  readonly key: string;
  readonly fingerprint: string;
  readonly recoveryPoint: string;
}

const STORE_OPTIONS: ReadonlySet<string> = new Set(['client', 'table']);

/** Options of {@link PostgresIdempotencyStore}. */
export interface PostgresIdempotencyStoreOptions extends IdempotencyTableOptions {
  /** A pool (or anything queryable); every operation is one autocommit statement. */
  readonly client: Queryable;
}

interface Statements {
  readonly claim: string;
  readonly read: string;
  readonly complete: string;
  readonly renew: string;
  readonly release: string;
  readonly remove: string;
  readonly advance: string;
  readonly reap: string;
  readonly abandoned: string;
}

const NOW = 'clock_timestamp()';
const msFromNow = (parameter: string): string => `${NOW} + ${parameter} * interval '1 millisecond'`;

/**
 * Idempotency records in a PostgreSQL table (create it with
 * {@link createIdempotencyTable}). A claim is one `INSERT ... ON CONFLICT`
 * statement that creates the record, replaces an expired one, or takes over
 * one whose lease ran out, with every time taken from the server's clock;
 * completing is one owner-checked `UPDATE`. Works through transaction-pooling
 * proxies (no session state).
 *
 * @example
 * ```ts
 * const store = new PostgresIdempotencyStore({ client: pool });
 * await idempotent(store, { scope: user.id, key, payload: body }, () => sendInvoice(body));
 * ```
 */
export class PostgresIdempotencyStore implements IdempotencyStore {
  readonly #db: Queryable;
  readonly #sql: Statements;

  constructor(options: PostgresIdempotencyStoreOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, STORE_OPTIONS, {
      db: 'unset: it is called client, as on every raceguard backend (db was its name before 0.1)',
    });
    assertQueryable('options.client', options.client);
    this.#db = options.client;
    const { table: t } = tableNames(options);
    const expired = `r.expires_at <= ${NOW}`;
    this.#sql = {
      // Insert; or replace an expired record; or take over a live one that
      // has no result, the same fingerprint and no live lease. The update
      // computes its lease and expiry again rather than taking EXCLUDED's:
      // those were computed when the statement started, and a statement that
      // waited on the row lock (a handler's transaction holding it) would
      // otherwise be granted a lease that has already run out.
      claim:
        `INSERT INTO ${t} AS r (scope, key, fingerprint, owner, lease_until, expires_at) ` +
        `VALUES ($1, $2, $3, $4, ${msFromNow('$5')}, ${msFromNow('$6')}) ` +
        `ON CONFLICT (scope, key) DO UPDATE SET owner = EXCLUDED.owner, lease_until = ${msFromNow('$5')}, ` +
        `fingerprint = EXCLUDED.fingerprint, ` +
        `attempts = CASE WHEN ${expired} THEN 1 ELSE r.attempts + 1 END, ` +
        `recovery_point = CASE WHEN ${expired} THEN NULL ELSE r.recovery_point END, ` +
        `result = CASE WHEN ${expired} THEN NULL ELSE r.result END, ` +
        `created_at = CASE WHEN ${expired} THEN ${NOW} ELSE r.created_at END, ` +
        `expires_at = CASE WHEN ${expired} THEN ${msFromNow('$6')} ELSE r.expires_at END ` +
        `WHERE ${expired} OR (r.result IS NULL AND r.fingerprint = EXCLUDED.fingerprint ` +
        `AND (r.owner IS NULL OR r.lease_until <= ${NOW})) ` +
        `RETURNING r.attempts, r.recovery_point`,
      read:
        `SELECT fingerprint, result, owner IS NOT NULL AS owned, ` +
        `greatest(0, ceil(extract(epoch FROM lease_until - ${NOW}) * 1000))::float8 AS lease_ms, ` +
        `expires_at <= ${NOW} AS expired FROM ${t} WHERE scope = $1 AND key = $2`,
      complete:
        `UPDATE ${t} SET result = $4, owner = NULL, lease_until = NULL, expires_at = ${msFromNow('$5')} ` +
        `WHERE scope = $1 AND key = $2 AND owner = $3 AND expires_at > ${NOW}`,
      renew:
        `UPDATE ${t} SET lease_until = ${msFromNow('$4')} ` +
        `WHERE scope = $1 AND key = $2 AND owner = $3 AND expires_at > ${NOW}`,
      release: `UPDATE ${t} SET owner = NULL, lease_until = NULL WHERE scope = $1 AND key = $2 AND owner = $3`,
      remove: `DELETE FROM ${t} WHERE scope = $1 AND key = $2 AND owner = $3`,
      advance:
        `UPDATE ${t} SET recovery_point = $4 ` +
        `WHERE scope = $1 AND key = $2 AND owner = $3 AND expires_at > ${NOW}`,
      abandoned:
        `SELECT scope, key, fingerprint, recovery_point FROM ${t} WHERE result IS NULL ` +
        `AND recovery_point IS NOT NULL AND (owner IS NULL OR lease_until <= ${NOW}) ` +
        `AND expires_at > ${NOW} ORDER BY created_at LIMIT $1`,
      reap:
        `DELETE FROM ${t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${t} ` +
        `WHERE expires_at <= ${NOW} LIMIT $1 FOR UPDATE SKIP LOCKED))`,
    };
  }

  async #run(
    text: string,
    values: unknown[],
  ): Promise<{ rows: Record<string, unknown>[]; count: number }> {
    const result = await runQuery(this.#db, text, values, statementName(text));
    return { rows: result.rows, count: result.rowCount ?? 0 };
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    const { scope, key, fingerprint, owner, leaseMs, ttlMs } = request;
    // A record deleted or released between the two statements sends us round again.
    for (let round = 0; round < 5; round += 1) {
      const claimed = await this.#run(this.#sql.claim, [
        scope,
        key,
        fingerprint,
        owner,
        leaseMs,
        ttlMs,
      ]);
      const row = claimed.rows[0];
      if (row !== undefined) {
        return {
          kind: 'claimed',
          resumed: Number(row.attempts) > 1,
          recoveryPoint: (row.recovery_point as string | null) ?? null,
        };
      }
      const found = (await this.#run(this.#sql.read, [scope, key])).rows[0];
      if (found === undefined || found.expired === true) continue;
      if (found.fingerprint !== fingerprint) return { kind: 'mismatch' };
      if (typeof found.result === 'string') return { kind: 'completed', result: found.result };
      const leaseLeft = Number(found.lease_ms);
      if (found.owned === true && leaseLeft > 0) {
        return { kind: 'in-progress', retryAfterMs: leaseLeft };
      }
    }
    return { kind: 'in-progress', retryAfterMs: 100 };
  }

  async complete(request: OwnerRequest & { result: string; ttlMs: number }): Promise<boolean> {
    const { scope, key, owner, result, ttlMs } = request;
    return (await this.#run(this.#sql.complete, [scope, key, owner, result, ttlMs])).count === 1;
  }

  async renew(request: OwnerRequest & { leaseMs: number }): Promise<boolean> {
    const { scope, key, owner, leaseMs } = request;
    return (await this.#run(this.#sql.renew, [scope, key, owner, leaseMs])).count === 1;
  }

  async abandon(request: OwnerRequest & { keep: boolean }): Promise<void> {
    const { scope, key, owner, keep } = request;
    await this.#run(keep ? this.#sql.release : this.#sql.remove, [scope, key, owner]);
  }

  async advance(request: OwnerRequest & { recoveryPoint: string }): Promise<boolean> {
    const { scope, key, owner, recoveryPoint } = request;
    return (await this.#run(this.#sql.advance, [scope, key, owner, recoveryPoint])).count === 1;
  }

  /**
   * Delete expired records, at most `batchSize` per statement, until none
   * are left. Resolves how many were deleted. Safe to run from several
   * processes at once (rows are skipped, not waited for).
   *
   * @example
   * ```ts
   * setInterval(() => void store.reap().catch(log.error), 60_000).unref();
   * ```
   */
  reap(options: ReapOptions = {}): Promise<number> {
    return reapInBatches(
      options,
      async (batchSize) => (await this.#run(this.#sql.reap, [batchSize])).count,
    );
  }

  /**
   * Records whose operation started, recorded a recovery point and then
   * stopped (no live lease, no result): what a completer resumes.
   */
  async findAbandoned(limit: number): Promise<AbandonedRecord[]> {
    assertPositiveInteger('limit', limit);
    const { rows } = await this.#run(this.#sql.abandoned, [limit]);
    return rows.map((row) => ({
      scope: String(row.scope),
      key: String(row.key),
      fingerprint: String(row.fingerprint),
      recoveryPoint: String(row.recovery_point),
    }));
  }

  /** The owner-checked recovery-point write, run inside a caller's transaction; resolves rows written (0 or 1). */
  advanceIn(tx: Queryable, request: OwnerRequest & { recoveryPoint: string }): Promise<number> {
    const { scope, key, owner, recoveryPoint } = request;
    return runQuery(tx, this.#sql.advance, [scope, key, owner, recoveryPoint]).then(
      (r) => r.rowCount ?? 0,
    );
  }

  /** The owner-checked completion statement, run inside a caller's transaction. */
  completeIn(
    tx: Queryable,
    request: OwnerRequest & { result: string; ttlMs: number },
  ): Promise<number> {
    const { scope, key, owner, result, ttlMs } = request;
    return runQuery(tx, this.#sql.complete, [scope, key, owner, result, ttlMs]).then(
      (r) => r.rowCount ?? 0,
    );
  }
}

/** Options of {@link idempotentTransaction}. */
export interface IdempotentTransactionOptions<R> extends IdempotencyOptions {
  /** Options of the transaction that runs the handler (isolation, retries, timeouts). */
  readonly transaction?: Omit<TransactionOptions, 'signal'>;
  /** Whether to store a result; one not stored lets the next request run again. @default () => true */
  readonly shouldStore?: (value: R) => boolean;
}

/**
 * The recommended way for handlers whose effects all live in the same
 * PostgreSQL database: the handler runs in a transaction, and the result is
 * recorded by an owner-checked `UPDATE` in that same transaction. So the
 * effects and their record commit together or not at all: a crash
 * anywhere leaves either both or neither, and a request that lost its claim
 * (its lease ran out and another took over) rolls its effects back with
 * {@link IdempotencyClaimLostError}. Claim, replay and conflict behave as in
 * `idempotent`.
 *
 * @example
 * ```ts
 * const { value } = await idempotentTransaction(pool, store, { scope: user.id, key, payload: body },
 *   async (tx) => {
 *     await tx.query('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [body.amount, user.id]);
 *     return { charged: body.amount };
 *   });
 * ```
 */
export async function idempotentTransaction<R>(
  pool: PoolLike,
  store: PostgresIdempotencyStore,
  options: IdempotentTransactionOptions<R>,
  handler: (tx: Transaction) => Promise<R>,
): Promise<IdempotentResult<R>> {
  if (!(store instanceof PostgresIdempotencyStore)) {
    throw new InvalidArgumentError('store', 'a PostgresIdempotencyStore', store);
  }
  assertFunction('handler', handler);
  const shouldStore = options.shouldStore ?? (() => true);
  assertFunction('options.shouldStore', shouldStore);
  const claim = await claimIdempotency<R>(store, options);
  if (claim.kind === 'replay') return { value: claim.value, replayed: true };
  await using execution = claim;
  const { owner } = execution;
  const value = await transaction(
    pool,
    async (tx) => {
      const result = await handler(tx);
      if (!shouldStore(result)) return result;
      let stored: number;
      try {
        stored = await store.completeIn(tx, {
          scope: options.scope,
          key: options.key,
          owner,
          result: serializeResult(result),
          ttlMs: options.ttlMs ?? DEFAULT_TTL_MS,
        });
      } catch (error) {
        throw new IdempotencyStoreError('complete', error);
      }
      if (stored !== 1) throw new IdempotencyClaimLostError();
      return result;
    },
    { ...options.transaction, signal: execution.signal },
  );
  if (shouldStore(value)) await execution.markCompleted();
  else await execution.abandon();
  return { value, replayed: false };
}
