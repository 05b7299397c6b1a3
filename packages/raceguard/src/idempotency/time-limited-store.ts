/**
 * A store whose every call answers within a time limit: a Redis that died
 * mid-request (its client reconnecting for minutes) or a blocked
 * PostgreSQL must not hold a finished response, or a new request, for
 * longer than the caller is prepared to wait. A call that outlives the
 * limit fails (the idempotency layer then fails closed); a claim granted
 * after it gave up is abandoned, so the key is free for the retry.
 */
import { within } from '../core/deadline.js';
import { RaceguardError } from '../core/errors.js';
import type { IdempotencyStore } from './store.js';

/** A store call did not answer within `callTimeoutMs`. */
export class StoreTimeoutError extends RaceguardError {
  constructor(operation: string, timeoutMs: number) {
    super(
      'RACEGUARD_IDEMPOTENCY_STORE_TIMEOUT',
      `the store did not answer ${operation} within ${timeoutMs} ms`,
    );
  }
}

/**
 * Wrap `store` so every call is raced against `timeoutMs`.
 *
 * @example
 * ```ts
 * const bounded = timeLimitedStore(store, 5000);
 * ```
 */
export function timeLimitedStore(store: IdempotencyStore, timeoutMs: number): IdempotencyStore {
  // One wrapper per store and limit, not one per request.
  let byLimit = wrappers.get(store);
  if (byLimit === undefined) wrappers.set(store, (byLimit = new Map<number, IdempotencyStore>()));
  const cached = byLimit.get(timeoutMs);
  if (cached !== undefined) return cached;
  const wrapper = wrap(store, timeoutMs);
  byLimit.set(timeoutMs, wrapper);
  return wrapper;
}

const wrappers = new WeakMap<IdempotencyStore, Map<number, IdempotencyStore>>();

function wrap(store: IdempotencyStore, timeoutMs: number): IdempotencyStore {
  const limit = <T>(
    operation: string,
    call: Promise<T>,
    late?: (value: T) => unknown,
  ): Promise<T> =>
    within(call, {
      deadline: performance.now() + timeoutMs,
      timeout: () => new StoreTimeoutError(operation, timeoutMs),
      late,
    });
  return {
    claim: (request) =>
      limit('claim', store.claim(request), (late) =>
        late.kind === 'claimed'
          ? store.abandon({
              scope: request.scope,
              key: request.key,
              owner: request.owner,
              // A takeover keeps the record and its recovery point; a new claim is removed.
              keep: late.resumed,
            })
          : undefined,
      ),
    complete: (request) => limit('complete', store.complete(request)),
    renew: (request) => limit('renew', store.renew(request)),
    abandon: (request) => limit('abandon', store.abandon(request)),
    advance: (request) => limit('advance', store.advance(request)),
  };
}
