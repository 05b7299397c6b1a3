import {
  IdempotencyInFlightError,
  LockAcquireTimeoutError,
  RetryExhaustedError,
  withLock,
} from 'raceguard';
// One class for both dialects: raceguard/mysql exports the same.
import { OptimisticConflictError } from 'raceguard/postgres';
import type { HandlerResult, Scenario, Strategy, HandlerContext } from './scenario.js';
import { lockRows, readRow, transaction, withAdvisoryLock } from './sql.js';

const missing: HandlerResult = { status: 422, body: { error: 'not-found' } };

/**
 * Serve one request of `scenario` with `strategy`. Lost races that the
 * strategy reports (optimistic conflicts, exhausted serialization retries,
 * lock timeouts) become 409 answers.
 */
export async function serve(
  scenario: Scenario,
  strategy: Strategy,
  request: Readonly<Record<string, unknown>>,
  context: HandlerContext,
): Promise<HandlerResult> {
  const { table, key, lockKey } = scenario.target(request);
  try {
    switch (strategy) {
      case 'unsafe': {
        const row = await readRow(context.pool, table, key);
        return row ? await scenario.checkThenAct(context.pool, row, request, context) : missing;
      }
      case 'pessimistic':
        return await transaction(
          context.pool,
          async (tx) => {
            const [row] = await lockRows(tx, { table, key });
            return row ? scenario.checkThenAct(tx, row, request, context) : missing;
          },
          context.retryOptions,
        );
      case 'serializable':
        return await transaction(
          context.pool,
          async (tx) => {
            const row = await readRow(tx, table, key);
            return row ? scenario.checkThenAct(tx, row, request, context) : missing;
          },
          { ...context.retryOptions, isolation: 'serializable' },
        );
      case 'advisory-lock':
        return await withAdvisoryLock(
          context.pool,
          context.advisoryLock,
          lockKey,
          async (tx) => {
            const row = await readRow(tx, table, key);
            return row ? scenario.checkThenAct(tx, row, request, context) : missing;
          },
          context.retryOptions,
        );
      case 'local-mutex':
      case 'redis-lock':
      case 'lease-lock':
      case 'etcd-lock': {
        const locker = context.lockers[strategy];
        if (locker === undefined)
          throw new Error(`the ${strategy} strategy was not set up on this server`);
        // The unsafe code, unchanged, inside the lock.
        return await withLock(
          locker,
          lockKey,
          async () => {
            const row = await readRow(context.pool, table, key);
            return row ? scenario.checkThenAct(context.pool, row, request, context) : missing;
          },
          { ttlMs: 30_000, waitMs: 30_000 },
        );
      }
      case 'atomic':
        return await scenario.atomic(request, context);
      case 'optimistic':
        return await scenario.optimistic(request, context);
      case 'idempotency-key':
        if (scenario.idempotent === undefined) {
          throw new Error(`the ${scenario.name} scenario has no idempotency-key variant`);
        }
        return await scenario.idempotent(request, context);
      case 'ordered-consumer':
      case 'inbox':
        throw new Error(`the ${strategy} strategy fixes message scenarios, not HTTP handlers`);
      case 'delete-before-write':
      case 'double-delete':
      case 'lease-cache':
      case 'versioned-write':
        throw new Error(`the ${strategy} strategy is about caches, not HTTP handlers`);
      case 'primary-window':
      case 'session-token':
        throw new Error(`the ${strategy} strategy is about replicas, not HTTP handlers`);
      case 'hlc':
        throw new Error('the hlc strategy is about clocks, not HTTP handlers');
    }
  } catch (error) {
    if (
      error instanceof OptimisticConflictError ||
      error instanceof RetryExhaustedError ||
      // Row, advisory and Locker timeouts alike (LockTimeoutError is a subclass).
      error instanceof LockAcquireTimeoutError ||
      error instanceof IdempotencyInFlightError
    ) {
      return { status: 409, body: { error: error.code } };
    }
    throw error;
  }
}
