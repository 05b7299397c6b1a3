import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import {
  reapInBatches,
  type ClaimRequest,
  type ClaimResult,
  type IdempotencyStore,
  type OwnerRequest,
  type ReapOptions,
} from '../idempotency/store.js';
import { MYSQL_ERRORS } from './errors.js';
import { quoteTable, type MysqlTableName } from './identifiers.js';
import { assertMysqlQueryable, execute } from './statements.js';
import { transaction } from './transaction.js';
import type { MysqlPool, MysqlQueryable } from './types.js';

/** Options of {@link createMysqlIdempotencyTable} and {@link MysqlIdempotencyStore}. */
export interface MysqlIdempotencyTableOptions {
  /** The records table. @default 'raceguard_idempotency' */
  readonly table?: MysqlTableName;
}

const tableOf = (options: MysqlIdempotencyTableOptions): string =>
  quoteTable(options.table ?? 'raceguard_idempotency', 'options.table');

/**
 * Creates the idempotency records table if missing (run it from a migration or at start-up).
 *
 * @example
 * ```ts
 * await createMysqlIdempotencyTable(pool);
 * ```
 */
export async function createMysqlIdempotencyTable(
  db: MysqlQueryable,
  options: MysqlIdempotencyTableOptions = {},
): Promise<void> {
  assertMysqlQueryable('db', db);
  assertPlainObject('options', options);
  await execute(
    db,
    `CREATE TABLE IF NOT EXISTS ${tableOf(options)} (
      scope varchar(191) NOT NULL,
      \`key\` varchar(191) NOT NULL,
      fingerprint varchar(191) NOT NULL,
      owner varchar(64) NULL,
      lease_until datetime(3) NULL,
      attempts int NOT NULL DEFAULT 1,
      recovery_point text NULL,
      result longtext NULL,
      created_at datetime(3) NOT NULL,
      expires_at datetime(3) NOT NULL,
      PRIMARY KEY (scope, \`key\`),
      KEY expires_at (expires_at)
    ) ENGINE=InnoDB`,
    [],
  );
}

/** `NOW(3)` plus `?` milliseconds, on the server's clock. */
const later = 'TIMESTAMPADD(MICROSECOND, ? * 1000, NOW(3))';

/**
 * Idempotency records in a MySQL / MariaDB table (create it with
 * {@link createMysqlIdempotencyTable}), every time taken from the server's
 * clock. A first claim is one INSERT; two first requests racing to create
 * the record meet on the primary key. A claim of an existing record is one
 * short transaction: the record is read under its row lock and replaced
 * (expired), taken over (lease run out, same fingerprint, no result) or
 * reported. Completing, renewing and advancing are
 * owner-checked single statements.
 *
 * @example
 * ```ts
 * const store = new MysqlIdempotencyStore({ client: pool });
 * await idempotent(store, { scope: user.id, key, payload: body }, () => sendInvoice(body));
 * ```
 */
export class MysqlIdempotencyStore implements IdempotencyStore {
  readonly #pool: MysqlPool;
  readonly #table: string;

  constructor(options: { readonly client: MysqlPool } & MysqlIdempotencyTableOptions) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, new Set(['client', 'table']));
    if (typeof (options.client as Partial<MysqlPool> | undefined)?.getConnection !== 'function') {
      throw new InvalidArgumentError('options.client', 'a mysql2/promise pool', options.client);
    }
    this.#pool = options.client;
    this.#table = tableOf(options);
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    const { scope, key, fingerprint, owner, leaseMs, ttlMs } = request;
    const t = this.#table;
    for (let round = 0; round < 5; round += 1) {
      // A first request is one autocommitted INSERT. Reading a missing row
      // under FOR UPDATE first would take a gap lock, and two first requests
      // holding the same gap deadlock on their inserts (1213).
      try {
        await execute(
          this.#pool,
          `INSERT INTO ${t} (scope, \`key\`, fingerprint, owner, lease_until, created_at, expires_at)
           VALUES (?, ?, ?, ?, ${later}, NOW(3), ${later})`,
          [scope, key, fingerprint, owner, leaseMs, ttlMs],
        );
        return { kind: 'claimed', resumed: false, recoveryPoint: null };
      } catch (error) {
        if ((error as { errno?: unknown }).errno !== MYSQL_ERRORS.duplicateKey) throw error;
      }
      // The record exists: read it under its row lock (a record lock, no gap)
      // and replace it (expired), take it over (lease run out, same
      // fingerprint, no result) or report it.
      const result = await transaction(
        this.#pool,
        async (tx): Promise<ClaimResult | 'gone'> => {
          const [rows] = (await tx.query(
            `SELECT fingerprint, owner IS NOT NULL AS owned, result, attempts, recovery_point,
               GREATEST(0, TIMESTAMPDIFF(MICROSECOND, NOW(3), lease_until) / 1000) AS lease_ms,
               expires_at <= NOW(3) AS expired
             FROM ${t} WHERE scope = ? AND \`key\` = ? FOR UPDATE`,
            [scope, key],
          )) as [Record<string, unknown>[], unknown];
          const found = rows[0];
          // Deleted since the INSERT failed (an abandoned claim): insert again.
          if (found === undefined) return 'gone';
          if (Number(found.expired) === 1) {
            await tx.query(
              `UPDATE ${t} SET fingerprint = ?, owner = ?, lease_until = ${later}, attempts = 1,
                 recovery_point = NULL, result = NULL, created_at = NOW(3), expires_at = ${later}
               WHERE scope = ? AND \`key\` = ?`,
              [fingerprint, owner, leaseMs, ttlMs, scope, key],
            );
            return { kind: 'claimed', resumed: false, recoveryPoint: null };
          }
          if (found.fingerprint !== fingerprint) return { kind: 'mismatch' };
          if (typeof found.result === 'string') return { kind: 'completed', result: found.result };
          const leaseLeft = Number(found.lease_ms);
          if (Number(found.owned) === 1 && leaseLeft > 0) {
            return { kind: 'in-progress', retryAfterMs: Math.ceil(leaseLeft) };
          }
          // Abandoned or run out: take it over, resuming from its recovery point.
          await tx.query(
            `UPDATE ${t} SET owner = ?, lease_until = ${later}, attempts = attempts + 1 WHERE scope = ? AND \`key\` = ?`,
            [owner, leaseMs, scope, key],
          );
          return {
            kind: 'claimed',
            resumed: true,
            recoveryPoint: (found.recovery_point as string | null) ?? null,
          };
        },
        { maxAttempts: 5 },
      );
      if (result !== 'gone') return result;
    }
    return { kind: 'in-progress', retryAfterMs: 100 };
  }

  async #owned(sql: string, values: unknown[]): Promise<boolean> {
    const header = await execute(this.#pool, sql, values);
    return header.affectedRows === 1;
  }

  complete(
    request: OwnerRequest & { readonly result: string; readonly ttlMs: number },
  ): Promise<boolean> {
    return this.#owned(
      `UPDATE ${this.#table} SET result = ?, owner = NULL, lease_until = NULL, expires_at = ${later}
       WHERE scope = ? AND \`key\` = ? AND owner = ? AND expires_at > NOW(3)`,
      [request.result, request.ttlMs, request.scope, request.key, request.owner],
    );
  }

  renew(request: OwnerRequest & { readonly leaseMs: number }): Promise<boolean> {
    return this.#owned(
      `UPDATE ${this.#table} SET lease_until = ${later} WHERE scope = ? AND \`key\` = ? AND owner = ? AND expires_at > NOW(3)`,
      [request.leaseMs, request.scope, request.key, request.owner],
    );
  }

  async abandon(request: OwnerRequest & { readonly keep: boolean }): Promise<void> {
    await execute(
      this.#pool,
      request.keep
        ? `UPDATE ${this.#table} SET owner = NULL, lease_until = NULL WHERE scope = ? AND \`key\` = ? AND owner = ?`
        : `DELETE FROM ${this.#table} WHERE scope = ? AND \`key\` = ? AND owner = ?`,
      [request.scope, request.key, request.owner],
    );
  }

  /**
   * Delete expired records, at most `batchSize` per statement, until none
   * are left. Resolves how many were deleted. Safe to run from several
   * processes at once (`DELETE … ORDER BY expires_at LIMIT`, each batch its
   * own statement).
   *
   * @example
   * ```ts
   * setInterval(() => void store.reap().catch(log.error), 60_000).unref();
   * ```
   */
  reap(options: ReapOptions = {}): Promise<number> {
    return reapInBatches(
      options,
      async (batchSize) =>
        (
          await execute(
            this.#pool,
            `DELETE FROM ${this.#table} WHERE expires_at <= NOW(3) ORDER BY expires_at LIMIT ?`,
            [batchSize],
          )
        ).affectedRows,
    );
  }

  advance(request: OwnerRequest & { readonly recoveryPoint: string }): Promise<boolean> {
    return this.#owned(
      `UPDATE ${this.#table} SET recovery_point = ? WHERE scope = ? AND \`key\` = ? AND owner = ? AND expires_at > NOW(3)`,
      [request.recoveryPoint, request.scope, request.key, request.owner],
    );
  }
}
