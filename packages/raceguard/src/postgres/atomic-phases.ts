/**
 * Multi-step idempotent operations as atomic phases with recovery points
 * (after Brandur Leach, "Implementing Stripe-like Idempotency Keys in
 * Postgres"): each phase commits its database writes and the new recovery
 * point in one SERIALIZABLE transaction; calls to other systems happen
 * between phases, with an idempotency key of their own passed downstream;
 * a retry, or {@link resumeAbandoned}, continues after the last committed
 * phase, so a crash never re-runs a phase that committed.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError, RaceguardError } from '../core/errors.js';
import {
  assertFunction,
  assertNonEmptyString,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { IdempotencyClaimLostError, IdempotencyStoreError } from '../idempotency/errors.js';
import { fingerprintPayload } from '../idempotency/fingerprint.js';
import {
  claimIdempotency,
  DEFAULT_TTL_MS,
  serializeResult,
  type Execution,
  type IdempotencyOptions,
  type IdempotentResult,
} from '../idempotency/idempotent.js';
import { PostgresIdempotencyStore } from './idempotency-store.js';
import { transaction, type Transaction, type TransactionOptions } from './transaction.js';
import type { PoolLike } from './types.js';

/** What every part of a phased operation sees. */
export interface PhaseContext<I, S> {
  /** The operation's input, as the first request sent it. */
  readonly input: I;
  /** The state the last committed phase returned (or the initial state). */
  readonly state: S;
  /**
   * An idempotency key for this phase's downstream call: stable across
   * retries and resumptions of this operation, distinct per phase, scope and key.
   */
  readonly downstreamKey: string;
  /** Aborts if the claim is lost. */
  readonly signal: AbortSignal;
  /** `true` if this run resumed an earlier, interrupted one. */
  readonly resumed: boolean;
}

/** One atomic phase: an optional foreign call, then one transaction. */
export interface Phase<I, S> {
  /** The recovery point reached when this phase commits. Unique within the operation. */
  readonly name: string;
  /**
   * A call to another system (payment provider, mailer), made before the
   * phase's transaction and outside any transaction. It runs again if the
   * process dies before the transaction commits, so it must be idempotent
   * downstream: pass `context.downstreamKey` as the provider's idempotency key.
   */
  call?(this: void, context: PhaseContext<I, S>): Promise<unknown>;
  /**
   * The phase's database writes, in a SERIALIZABLE transaction that also
   * records the recovery point. Returns the new state (JSON). `called` is
   * what `call` returned.
   */
  commit(
    this: void,
    tx: Transaction,
    context: PhaseContext<I, S> & { readonly called: unknown },
  ): Promise<S>;
}

/** A multi-step operation. */
export interface PhasedOperation<I, S, R> {
  /** Stored in the record so a completer knows what to resume. */
  readonly name: string;
  /** The state before the first phase. */
  readonly initialState: S;
  /** The phases, in order. */
  readonly phases: readonly Phase<I, S>[];
  /** The result stored for replay, computed from the final state (in the completing transaction). */
  respond(this: void, state: S, input: I): R;
}

/** Options of {@link runPhases}. */
export interface RunPhasesOptions<I> extends Omit<IdempotencyOptions, 'payload'> {
  /** The operation's input; also the payload that key reuse is checked against. */
  readonly input: I;
  /** Options of each phase's transaction (isolation is SERIALIZABLE unless set). */
  readonly transaction?: Omit<TransactionOptions, 'signal'>;
}

/** The operation recorded in the recovery point does not match the one asked to run. */
export class PhaseMismatchError extends RaceguardError {
  constructor(detail: string) {
    super('RACEGUARD_PHASE_MISMATCH', detail);
  }
}

interface Progress<I, S> {
  readonly operation: string;
  readonly input: I;
  readonly done: number;
  readonly state: S;
}

function checkOperation<I, S, R>(operation: PhasedOperation<I, S, R>): void {
  assertPlainObject('operation', operation);
  assertNonEmptyString('operation.name', operation.name);
  assertFunction('operation.respond', operation.respond);
  const phases: readonly Phase<I, S>[] = operation.phases;
  if (!isArray(phases) || phases.length === 0) {
    throw new InvalidArgumentError('operation.phases', 'a non-empty array of phases', phases);
  }
  const names = new Set<string>();
  phases.forEach((phase, i) => {
    assertNonEmptyString(`operation.phases[${i}].name`, phase.name);
    assertFunction(`operation.phases[${i}].commit`, phase.commit);
    if (phase.call !== undefined) assertFunction(`operation.phases[${i}].call`, phase.call);
    if (names.has(phase.name)) {
      throw new InvalidArgumentError(
        `operation.phases[${i}].name`,
        'unique within the operation',
        phase.name,
      );
    }
    names.add(phase.name);
  });
}

function isArray(value: unknown): boolean {
  return Array.isArray(value);
}

function downstreamKey(scope: string, key: string, operation: string, phase: string): string {
  return createHash('sha256')
    .update(`${scope}\0${key}\0${operation}\0${phase}`)
    .digest('hex')
    .slice(0, 40);
}

/**
 * Run (or resume) a phased operation at most once per (scope, key). A retry
 * of a finished operation replays its result; a retry of an interrupted
 * one continues after its last committed phase.
 *
 * @example
 * ```ts
 * const checkout: PhasedOperation<Order, { orderId?: number; chargeId?: string }, Receipt> = {
 *   name: 'checkout',
 *   initialState: {},
 *   phases: [
 *     { name: 'order-created', commit: async (tx, { input }) => ({ orderId: await insertOrder(tx, input) }) },
 *     {
 *       name: 'charged',
 *       call: ({ input, downstreamKey }) => stripe.charges.create(input.charge, { idempotencyKey: downstreamKey }),
 *       commit: async (tx, { state, called }) => ({ ...state, chargeId: await recordCharge(tx, state, called) }),
 *     },
 *   ],
 *   respond: (state) => ({ orderId: state.orderId, chargeId: state.chargeId }),
 * };
 * await runPhases(pool, store, checkout, { scope: user.id, key, input: order });
 * ```
 */
export async function runPhases<I, S, R>(
  pool: PoolLike,
  store: PostgresIdempotencyStore,
  operation: PhasedOperation<I, S, R>,
  options: RunPhasesOptions<I>,
): Promise<IdempotentResult<R>> {
  if (!(store instanceof PostgresIdempotencyStore)) {
    throw new InvalidArgumentError('store', 'a PostgresIdempotencyStore', store);
  }
  checkOperation(operation);
  assertPlainObject('options', options);
  const { input, transaction: txOptions, ...claimOptions } = options;
  const fingerprint =
    options.fingerprint ?? fingerprintPayload({ operation: operation.name, input });
  const claim = await claimIdempotency<R>(store, { ...claimOptions, fingerprint });
  if (claim.kind === 'replay') return { value: claim.value, replayed: true };
  return {
    value: await continuePhases(pool, store, operation, options, claim, txOptions),
    replayed: false,
  };
}

async function continuePhases<I, S, R>(
  pool: PoolLike,
  store: PostgresIdempotencyStore,
  operation: PhasedOperation<I, S, R>,
  options: {
    readonly scope: string;
    readonly key: string;
    readonly input: I;
    readonly ttlMs?: number;
  },
  execution: Execution<R>,
  txOptions: Omit<TransactionOptions, 'signal'> | undefined,
): Promise<R> {
  const { scope, key } = options;
  const { owner } = execution;
  let progress: Progress<I, S>;
  if (execution.recoveryPoint === null) {
    progress = {
      operation: operation.name,
      input: options.input,
      done: 0,
      state: operation.initialState,
    };
    // Record the input first, so a completer can resume even before phase one commits.
    await execution.advance(JSON.stringify(progress));
  } else {
    progress = JSON.parse(execution.recoveryPoint) as Progress<I, S>;
    if (progress.operation !== operation.name) {
      await execution.abandon({ keep: true });
      throw new PhaseMismatchError(
        `the record belongs to operation "${progress.operation}", not "${operation.name}"`,
      );
    }
  }
  const tx = { isolation: 'serializable' as const, ...txOptions, signal: execution.signal };
  try {
    for (let i = progress.done; i < operation.phases.length; i += 1) {
      const phase = operation.phases[i] as Phase<I, S>;
      const context: PhaseContext<I, S> = {
        input: progress.input,
        state: progress.state,
        downstreamKey: downstreamKey(scope, key, operation.name, phase.name),
        signal: execution.signal,
        resumed: execution.resumed,
      };
      const called = phase.call === undefined ? undefined : await phase.call(context);
      progress = await transaction(
        pool,
        async (t) => {
          const state = await phase.commit(t, { ...context, called });
          const next: Progress<I, S> = {
            operation: operation.name,
            input: progress.input,
            done: i + 1,
            state,
          };
          const written = await store
            .advanceIn(t, { scope, key, owner, recoveryPoint: JSON.stringify(next) })
            .catch((error: unknown) => {
              throw new IdempotencyStoreError('advance', error);
            });
          if (written !== 1) throw new IdempotencyClaimLostError();
          return next;
        },
        tx,
      );
    }
    const final = progress;
    const result = await transaction(
      pool,
      async (t) => {
        const value = operation.respond(final.state, final.input);
        const written = await store
          .completeIn(t, {
            scope,
            key,
            owner,
            result: serializeResult(value),
            ttlMs: options.ttlMs ?? DEFAULT_TTL_MS,
          })
          .catch((error: unknown) => {
            throw new IdempotencyStoreError('complete', error);
          });
        if (written !== 1) throw new IdempotencyClaimLostError();
        return value;
      },
      tx,
    );
    await execution.markCompleted();
    return result;
  } catch (error) {
    // Keep the recovery point and free the lease: the next retry resumes at once.
    await execution.abandon({ keep: true }).catch(() => undefined);
    throw error;
  }
}

/** Options of {@link resumeAbandoned}. */
export interface ResumeAbandonedOptions {
  /** Most records resumed in this call. @default 100 */
  readonly limit?: number;
  /** Lease of each resumed operation. @default 30000 */
  readonly leaseMs?: number;
}

/** What {@link resumeAbandoned} did. */
export interface ResumeReport {
  readonly completed: number;
  /** Records skipped because another process claimed them first. */
  readonly skipped: number;
  readonly failed: readonly {
    readonly scope: string;
    readonly key: string;
    readonly error: Error;
  }[];
}

/**
 * The completer: find operations that started, recorded progress and then
 * stopped (their process died, or a phase failed), and drive each to
 * completion from its last recovery point. Safe to run from several
 * processes at once: each record is claimed first, as a retry would claim it.
 *
 * @example
 * ```ts
 * setInterval(() => void resumeAbandoned(pool, store, [checkout]).catch(log.error), 60_000).unref();
 * ```
 */
export async function resumeAbandoned(
  pool: PoolLike,
  store: PostgresIdempotencyStore,
  operations: readonly PhasedOperation<unknown, unknown, unknown>[],
  options: ResumeAbandonedOptions = {},
): Promise<ResumeReport> {
  if (!(store instanceof PostgresIdempotencyStore)) {
    throw new InvalidArgumentError('store', 'a PostgresIdempotencyStore', store);
  }
  if (!isArray(operations)) {
    throw new InvalidArgumentError('operations', 'an array of operations', operations);
  }
  operations.forEach((op) => checkOperation(op));
  assertPlainObject('options', options);
  const limit = options.limit ?? 100;
  assertPositiveInteger('options.limit', limit);
  const byName = new Map(operations.map((op) => [op.name, op]));
  let completed = 0;
  let skipped = 0;
  const failed: { scope: string; key: string; error: Error }[] = [];
  for (const record of await store.findAbandoned(limit)) {
    try {
      const progress = JSON.parse(record.recoveryPoint) as Progress<unknown, unknown>;
      const operation = byName.get(progress.operation);
      if (operation === undefined) {
        throw new PhaseMismatchError(`no operation named "${progress.operation}" was given`);
      }
      const claim = await claimIdempotency<unknown>(store, {
        scope: record.scope,
        key: record.key,
        fingerprint: record.fingerprint,
        ...(options.leaseMs !== undefined && { leaseMs: options.leaseMs }),
      });
      if (claim.kind === 'replay') {
        skipped += 1;
        continue;
      }
      await continuePhases(
        pool,
        store,
        operation,
        { ...record, input: progress.input },
        claim,
        undefined,
      );
      completed += 1;
    } catch (error) {
      if (error instanceof RaceguardError && error.code === 'RACEGUARD_IDEMPOTENCY_IN_FLIGHT') {
        skipped += 1;
      } else {
        failed.push({
          scope: record.scope,
          key: record.key,
          error: error instanceof Error ? error : new Error(String(error)),
        });
      }
    }
  }
  return { completed, skipped, failed };
}
