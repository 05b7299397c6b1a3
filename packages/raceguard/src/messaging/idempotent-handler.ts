/**
 * Exactly-once effects for handlers without a database: each message runs
 * through `idempotent()` keyed by its id, so a redelivered or republished
 * message, in this process or another, replays instead of running again.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { assertFunction, assertNonEmptyString, assertPlainObject } from '../core/validate.js';
import { idempotent, type IdempotencyOptions } from '../idempotency/idempotent.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { Message } from './message.js';
import type { HandlerContext } from './ordered-consumer.js';

/** Options of {@link idempotentHandler}. */
export interface IdempotentHandlerOptions extends Pick<
  IdempotencyOptions,
  'ttlMs' | 'leaseMs' | 'callTimeoutMs'
> {
  /** Any idempotency store: `RedisIdempotencyStore`, `PostgresIdempotencyStore`, memory. */
  readonly store: IdempotencyStore;
  /** This consumer's name: its records never collide with another consumer's. */
  readonly scope: string;
}

/**
 * Wrap a handler so that each message id runs at most once while its record
 * lives (`ttlMs`, a day by default): for handlers that call out (an e-mail,
 * a payment provider) rather than write to PostgreSQL, where `PostgresInbox`
 * is the stronger choice. A copy that arrives while the first still runs
 * fails with `IdempotencyInFlightError`, which the ordered consumer retries.
 *
 * @example
 * ```ts
 * const consumer = new OrderedConsumer({
 *   handler: idempotentHandler((m) => mailer.send(m.payload), { store, scope: 'mailer' }),
 * });
 * ```
 */
export function idempotentHandler(
  handler: (message: Message, context: HandlerContext) => Promise<unknown>,
  options: IdempotentHandlerOptions,
): (message: Message, context: HandlerContext) => Promise<void> {
  assertFunction('handler', handler);
  assertPlainObject('options', options);
  const { store, scope, ...rest } = options;
  assertNonEmptyString('options.scope', scope);
  for (const method of ['claim', 'complete', 'abandon'] as const) {
    if (typeof (store as unknown as Record<string, unknown> | undefined)?.[method] !== 'function') {
      throw new InvalidArgumentError('options.store', 'an idempotency store', store);
    }
  }
  return async (message, context) => {
    await idempotent(
      store,
      {
        ...rest,
        scope,
        // Ids may hold any characters; idempotency keys are printable ASCII.
        key: createHash('sha256').update(message.id).digest('hex'),
        payload: {
          key: message.key,
          seq: message.seq,
          type: message.type,
          payload: message.payload,
        },
        signal: context.signal,
      },
      async () => {
        await handler(message, context);
        return null;
      },
    );
  };
}
