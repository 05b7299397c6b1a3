/**
 * Run an operation at most once per (scope, key): the claim protocol shared
 * by the framework-free {@link idempotent} and the HTTP middleware.
 */
import { publishIdempotency } from '../core/events.js';
import { createLazyAbort, isAborted, sleep, type LazyAbort } from '../core/abort.js';
import { AbortedError, InvalidArgumentError } from '../core/errors.js';
import { undoUnknownOutcome } from '../core/deadline.js';
import { nextOwnerId } from '../core/owner-id.js';
import {
  assertAbortSignal,
  assertFunction,
  assertNonEmptyString,
  assertNonNegativeInteger,
  assertOneOf,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import {
  IdempotencyClaimLostError,
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
  IdempotencyStoreError,
} from './errors.js';
import { fingerprintPayload } from './fingerprint.js';
import { validateIdempotencyKey } from './key.js';
import type { ClaimResult, IdempotencyStore } from './store.js';
import { StoreTimeoutError, timeLimitedStore } from './time-limited-store.js';

/** What to do when a request arrives while another with its key is running. */
export type ConcurrentPolicy = 'conflict' | 'wait';

/** Options of {@link claimIdempotency} and {@link idempotent}. */
export interface IdempotencyOptions {
  /** The caller's identity (tenant, user, API client). Required: results never cross scopes. */
  readonly scope: string;
  /** The client's idempotency key (printable ASCII, 1 to `maxKeyLength` characters). */
  readonly key: string;
  /**
   * What the request asks for; a later request with the same key and a
   * different payload is refused. Hashed as canonical JSON (member order
   * does not matter). Ignored when `fingerprint` is given.
   */
  readonly payload?: unknown;
  /** A precomputed request fingerprint, e.g. from `fingerprintRequest`. */
  readonly fingerprint?: string;
  /**
   * `'conflict'`: a duplicate that arrives while the first request runs
   * fails at once with {@link IdempotencyInFlightError}. `'wait'`: it waits
   * (up to `waitMs`) and then gets the first request's result.
   * @default 'conflict'
   */
  readonly concurrent?: ConcurrentPolicy;
  /** Longest wait in `'wait'` mode; `0` does not wait (as a lock's `waitMs: 0` tries once). @default 30000 */
  readonly waitMs?: number;
  /**
   * How long a claim holds without renewal. While the handler runs the
   * lease is renewed every third of it; if the process dies, the key is
   * free to be taken over (and resumed) when the lease runs out, never before.
   * @default 30000
   */
  readonly leaseMs?: number;
  /** How long a record lives after completion (the published key expiry). @default 86400000 (24 h) */
  readonly ttlMs?: number;
  /** Longest key accepted. @default 255 */
  readonly maxKeyLength?: number;
  /**
   * When the store fails before the handler ran: `false` refuses the
   * request ({@link IdempotencyStoreError}); `true` runs the handler
   * unprotected (the name the cache uses for the same choice).
   * @default false
   */
  readonly failOpen?: boolean;
  /**
   * Longest wait for one store call. A store that does not answer in time
   * counts as failed: before the handler, the request is refused (or run
   * unprotected with `failOpen: true`); after it, the result is not
   * stored and the record is left to its lease. Keep the store client's
   * own timeouts shorter still (see docs/idempotency.md).
   * @default 5000
   */
  readonly callTimeoutMs?: number;
  /** Stops waiting (claims in `'wait'` mode). */
  readonly signal?: AbortSignal;
}

/** A claim found the operation already done: here is its result. */
export interface Replay<R> {
  readonly kind: 'replay';
  readonly value: R;
}

/** The caller holds the key and must run the operation, then complete or abandon. */
export interface Execution<R> {
  readonly kind: 'execute';
  /** `false` only when the store failed and `failOpen: true` let the request through. */
  readonly protected: boolean;
  /** `true` if this took over a claim whose owner stopped (crashed, or its lease ran out). */
  readonly resumed: boolean;
  /** The last recovery point the previous owner recorded with `advance`, if any. */
  readonly recoveryPoint: string | null;
  /** Aborts if the claim is lost while the operation runs. */
  readonly signal: AbortSignal;
  /** This attempt's owner id: the store checks it on every write. */
  readonly owner: string;
  /** Store the result and end the claim. Throws {@link IdempotencyClaimLostError} if it was lost. */
  complete(value: R): Promise<void>;
  /** Record a recovery point of a multi-step operation. */
  advance(recoveryPoint: string): Promise<void>;
  /**
   * End the claim without a result. `keep: true` keeps the record (and its
   * recovery point) so the next request resumes; otherwise it is deleted and
   * the next request runs afresh.
   */
  abandon(options?: { readonly keep?: boolean }): Promise<void>;
  /**
   * For callers that stored the result with their own owner-checked
   * statement (as `idempotentTransaction` does inside the handler's
   * transaction): stop renewing the lease, write nothing.
   */
  markCompleted(): Promise<void>;
  /** Abandon (deleting the record) unless completed or abandoned already. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The outcome of {@link claimIdempotency}. */
export type Claim<R> = Replay<R> | Execution<R>;

interface Settings {
  readonly scope: string;
  readonly key: string;
  readonly fingerprint: string;
  readonly concurrent: ConcurrentPolicy;
  readonly waitMs: number;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly failOpen: boolean;
  readonly signal: AbortSignal | undefined;
  /** The store, every call bounded by `callTimeoutMs`. */
  readonly store: IdempotencyStore;
}

/** The default of {@link IdempotencyOptions.callTimeoutMs}. */
export const DEFAULT_STORE_TIMEOUT_MS = 5000;

const COMPLETE_ATTEMPTS = 3;

/** The published record lifetime, 24 h: the default of every `ttlMs`. */
export const DEFAULT_TTL_MS = 86_400_000;

/** A result as the stores keep it: JSON text (`undefined` is kept as `null`). */
export function serializeResult(value: unknown): string {
  return JSON.stringify(value) ?? 'null';
}

/** Options renamed before 0.1, refused with their new name. */
const RENAMED_OPTIONS = [
  ['storeFailure', "failOpen (true for 'open'), as in the cache"],
  ['storeTimeoutMs', "callTimeoutMs, the one name of a round trip's timeout on every backend"],
] as const;

/** The options of a claim that are the same for every request, checked once. */
export interface PreparedIdempotency {
  /** The store, every call bounded by `callTimeoutMs`. */
  readonly store: IdempotencyStore;
  readonly maxKeyLength: number;
  readonly concurrent: ConcurrentPolicy;
  readonly waitMs: number;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly failOpen: boolean;
}

/** What each request brings to a prepared claim. */
export type ClaimRequestOptions = Pick<
  IdempotencyOptions,
  'scope' | 'key' | 'fingerprint' | 'payload' | 'signal'
>;

/**
 * Check the options that do not change per request, once: an adapter calls
 * this at construction and {@link claimPrepared} per request. Throws
 * `InvalidArgumentError`.
 */
export function prepareIdempotency(
  store: IdempotencyStore,
  options: Omit<IdempotencyOptions, keyof ClaimRequestOptions>,
): PreparedIdempotency {
  if (typeof store !== 'object' || store === null || typeof store.claim !== 'function') {
    throw new InvalidArgumentError('store', 'an IdempotencyStore', store);
  }
  assertPlainObject('options', options);
  const maxKeyLength = options.maxKeyLength ?? 255;
  assertPositiveInteger('options.maxKeyLength', maxKeyLength);
  const concurrent = options.concurrent ?? 'conflict';
  assertOneOf('options.concurrent', concurrent, ['conflict', 'wait']);
  for (const [old, now] of RENAMED_OPTIONS) {
    if (old in options)
      throw new InvalidArgumentError(
        `options.${old}`,
        `unset: it is called ${now}`,
        (options as Record<string, unknown>)[old],
      );
  }
  const failOpen = options.failOpen ?? false;
  if (typeof failOpen !== 'boolean')
    throw new InvalidArgumentError('options.failOpen', 'a boolean', failOpen);
  const waitMs = options.waitMs ?? 30_000;
  const leaseMs = options.leaseMs ?? 30_000;
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  assertNonNegativeInteger('options.waitMs', waitMs);
  assertPositiveInteger('options.leaseMs', leaseMs);
  assertPositiveInteger('options.ttlMs', ttlMs);
  if (ttlMs < leaseMs) {
    throw new InvalidArgumentError('options.ttlMs', `at least options.leaseMs (${leaseMs})`, ttlMs);
  }
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  assertPositiveInteger('options.callTimeoutMs', callTimeoutMs);
  return {
    store: timeLimitedStore(store, callTimeoutMs),
    maxKeyLength,
    concurrent,
    waitMs,
    leaseMs,
    ttlMs,
    failOpen,
  };
}

/** The settings of one claim: the prepared options and what the request brings, checked. */
function forRequest(prepared: PreparedIdempotency, request: ClaimRequestOptions): Settings {
  assertNonEmptyString('options.scope', request.scope);
  const key = validateIdempotencyKey(request.key, { maxLength: prepared.maxKeyLength });
  if (request.fingerprint !== undefined) {
    assertNonEmptyString('options.fingerprint', request.fingerprint);
  }
  assertAbortSignal('options.signal', request.signal);
  return {
    store: prepared.store,
    scope: request.scope,
    key,
    fingerprint: request.fingerprint ?? fingerprintPayload(request.payload),
    concurrent: prepared.concurrent,
    waitMs: prepared.waitMs,
    leaseMs: prepared.leaseMs,
    ttlMs: prepared.ttlMs,
    failOpen: prepared.failOpen,
    signal: request.signal,
  };
}

/**
 * Claim an idempotency key: the low-level protocol under {@link idempotent}
 * and the HTTP middleware, for code whose operation does not fit in one
 * callback. Resolves a replay of the stored result, or an execution the
 * caller must complete or abandon (use `await using` so an exception
 * abandons it). Throws {@link IdempotencyInFlightError},
 * {@link IdempotencyKeyReusedError} or {@link IdempotencyStoreError}.
 *
 * @example
 * ```ts
 * const claim = await claimIdempotency<Receipt>(store, { scope: user.id, key, payload: body });
 * if (claim.kind === 'replay') return claim.value;
 * await using execution = claim;
 * const receipt = await charge(body);
 * await execution.complete(receipt);
 * return receipt;
 * ```
 */
export function claimIdempotency<R>(
  store: IdempotencyStore,
  options: IdempotencyOptions,
): Promise<Claim<R>> {
  return claimWith<R>(() => forRequest(prepareIdempotency(store, options), options));
}

/**
 * {@link claimIdempotency} with options checked once by
 * {@link prepareIdempotency}: per request only the scope, key, fingerprint
 * and signal are checked (the HTTP adapters' path).
 */
export function claimPrepared<R>(
  prepared: PreparedIdempotency,
  request: ClaimRequestOptions,
): Promise<Claim<R>> {
  return claimWith<R>(() => forRequest(prepared, request));
}

/** The claim loop; `check` builds the settings inside it, so bad input rejects. */
async function claimWith<R>(check: () => Settings): Promise<Claim<R>> {
  const settings = check();
  const owner = nextOwnerId();
  const started = performance.now();
  let pause = 10;
  for (;;) {
    if (isAborted(settings.signal)) throw new AbortedError(settings.signal?.reason);
    let found: ClaimResult;
    const sentAt = performance.now();
    try {
      found = await settings.store.claim({
        scope: settings.scope,
        key: settings.key,
        fingerprint: settings.fingerprint,
        owner,
        leaseMs: settings.leaseMs,
        ttlMs: settings.ttlMs,
      });
    } catch (error) {
      // No answer (a driver timeout, a dropped connection): the claim may
      // still be recorded, and would hold the key for a whole lease against
      // the retry this failure invites. Give it back by owner.
      undoUnknownOutcome(() =>
        settings.store.abandon({ scope: settings.scope, key: settings.key, owner, keep: false }),
      );
      if (settings.failOpen) {
        publishIdempotency('unprotected');
        return unprotected<R>();
      }
      publishIdempotency('store-error');
      throw new IdempotencyStoreError('claim', error);
    }
    switch (found.kind) {
      case 'claimed':
        publishIdempotency('executed');
        return new StoreExecution<R>(
          settings.store,
          settings,
          owner,
          sentAt,
          found.resumed,
          found.recoveryPoint,
        );
      case 'completed':
        publishIdempotency('replayed');
        return { kind: 'replay', value: JSON.parse(found.result) as R };
      case 'mismatch':
        publishIdempotency('key-reused');
        throw new IdempotencyKeyReusedError();
      case 'in-progress': {
        const left = settings.waitMs - (performance.now() - started);
        if (settings.concurrent === 'conflict' || left <= 0) {
          publishIdempotency('in-flight');
          throw new IdempotencyInFlightError(found.retryAfterMs);
        }
        await sleep(Math.min(pause, found.retryAfterMs + 1, left), settings.signal);
        pause = Math.min(pause * 2, 200);
      }
    }
  }
}

/** The result of {@link idempotent}. */
export interface IdempotentResult<R> {
  /** The handler's result, or the stored result of the first request. */
  readonly value: R;
  /** `true` if the handler did not run and `value` is the stored result. */
  readonly replayed: boolean;
}

/** What the handler of {@link idempotent} receives. */
export interface IdempotentContext {
  /** Aborts if the claim is lost while the handler runs. */
  readonly signal: AbortSignal;
  /** `true` if a previous attempt with this key started and did not finish. */
  readonly resumed: boolean;
}

/** Options of {@link idempotent}. */
export interface IdempotentOptions<R> extends IdempotencyOptions {
  /** Whether to store a result; a result not stored lets the next request run again. @default () => true */
  readonly shouldStore?: (value: R) => boolean;
}

/**
 * Run `handler` at most once per (`scope`, `key`) while its record lives.
 * A retry after completion gets the stored result without running the
 * handler; a concurrent duplicate gets {@link IdempotencyInFlightError} (or
 * waits, with `concurrent: 'wait'`); a retry with a different payload gets
 * {@link IdempotencyKeyReusedError}. If the handler throws, the claim is
 * dropped and the error rethrown, so a retry runs it again. Results are
 * stored as JSON: they must be JSON-serialisable and come back as parsed
 * JSON on a replay.
 *
 * With the PostgreSQL store, prefer `idempotentTransaction` from
 * `raceguard/postgres` when the handler only writes to that database: it
 * stores the result in the handler's own transaction.
 *
 * @example
 * ```ts
 * const { value, replayed } = await idempotent(
 *   store,
 *   { scope: customer.id, key: request.headers['idempotency-key'], payload: body },
 *   () => payments.charge(customer, body.amount),
 * );
 * ```
 */
export async function idempotent<R>(
  store: IdempotencyStore,
  options: IdempotentOptions<R>,
  handler: (context: IdempotentContext) => Promise<R> | R,
): Promise<IdempotentResult<R>> {
  assertFunction('handler', handler);
  const shouldStore = options.shouldStore ?? (() => true);
  assertFunction('options.shouldStore', shouldStore);
  const claim = await claimIdempotency<R>(store, options);
  if (claim.kind === 'replay') return { value: claim.value, replayed: true };
  await using execution = claim;
  const value = await handler({ signal: execution.signal, resumed: execution.resumed });
  if (shouldStore(value)) await execution.complete(value);
  else await execution.abandon();
  return { value, replayed: false };
}

function unprotected<R>(): Execution<R> {
  const signal = new AbortController().signal;
  const done = (): Promise<void> => Promise.resolve();
  return {
    kind: 'execute',
    protected: false,
    resumed: false,
    recoveryPoint: null,
    signal,
    owner: '',
    complete: done,
    markCompleted: done,
    advance: done,
    abandon: done,
    [Symbol.asyncDispose]: done,
  };
}

class StoreExecution<R> implements Execution<R> {
  readonly kind = 'execute';
  readonly protected = true;
  readonly #store: IdempotencyStore;
  readonly #settings: Settings;
  readonly owner: string;
  // Created on first read or loss: the HTTP path never reads it.
  #lost: LazyAbort | undefined;
  readonly #heartbeat: NodeJS.Timeout;
  /** When the lease last certainly began: the send time of the claim or of the last renewal. */
  #renewedAt: number;
  #renewing: Promise<void> | undefined;
  #ended = false;

  constructor(
    store: IdempotencyStore,
    settings: Settings,
    owner: string,
    claimedAt: number,
    readonly resumed: boolean,
    readonly recoveryPoint: string | null,
  ) {
    this.#store = store;
    this.#settings = settings;
    this.owner = owner;
    this.#renewedAt = claimedAt;
    this.#heartbeat = setInterval(() => this.#renew(), Math.max(1, settings.leaseMs / 3));
    this.#heartbeat.unref();
  }

  get signal(): AbortSignal {
    return (this.#lost ??= createLazyAbort()).signal;
  }

  #renew(): void {
    if (this.#ended || this.#renewing !== undefined) return;
    const sentAt = performance.now();
    this.#renewing = this.#store
      .renew({
        scope: this.#settings.scope,
        key: this.#settings.key,
        owner: this.owner,
        leaseMs: this.#settings.leaseMs,
      })
      .then(
        (held) => {
          if (this.#ended) return;
          if (held) this.#renewedAt = sentAt;
          else this.#lose(new IdempotencyClaimLostError(this.#settings));
        },
        (error: unknown) => {
          if (this.#ended) return;
          // A failed renewal is retried at the next beat; once the lease may
          // have run out, another request may take over: report the loss.
          if (performance.now() - this.#renewedAt >= this.#settings.leaseMs) {
            this.#lose(new IdempotencyStoreError('renew', error));
          }
        },
      )
      .finally(() => {
        this.#renewing = undefined;
      });
  }

  #lose(reason: Error): void {
    clearInterval(this.#heartbeat);
    (this.#lost ??= createLazyAbort()).abort(reason);
  }

  /** Stop renewing; the renewal still in flight, if any, to wait for. */
  #end(): Promise<void> | undefined {
    this.#ended = true;
    clearInterval(this.#heartbeat);
    return this.#renewing;
  }

  /** Whether the record holds `result` already (an earlier attempt landed though its reply was lost). */
  async #storedAlready(result: string): Promise<boolean> {
    const probe = await this.#store.claim({
      scope: this.#settings.scope,
      key: this.#settings.key,
      fingerprint: this.#settings.fingerprint,
      owner: this.owner,
      leaseMs: this.#settings.leaseMs,
      ttlMs: this.#settings.ttlMs,
    });
    // Gone and claimed afresh by the probe: give it back, the result is not stored.
    if (probe.kind === 'claimed') {
      const { scope, key } = this.#settings;
      await this.#store.abandon({ scope, key, owner: this.owner, keep: false });
    }
    return probe.kind === 'completed' && probe.result === result;
  }

  async complete(value: R): Promise<void> {
    if (this.#ended) throw new IdempotencyClaimLostError(this.#settings);
    // Awaited only when a renewal is in flight: an await costs a tick on every request.
    const renewing = this.#end();
    if (renewing !== undefined) await renewing;
    const result = serializeResult(value);
    let failure: unknown;
    for (let attempt = 1; attempt <= COMPLETE_ATTEMPTS; attempt += 1) {
      try {
        // A literal of one shape: spreading a shared id object into it cost
        // about 3 µs per completion (V8's slow object clone).
        const held = await this.#store.complete({
          scope: this.#settings.scope,
          key: this.#settings.key,
          owner: this.owner,
          result,
          ttlMs: this.#settings.ttlMs,
        });
        if (held) return;
        // A retry after a reply was lost: the first attempt may have stored this very
        // result. Completion by the same execution is idempotent.
        if (attempt > 1 && (await this.#storedAlready(result))) return;
        throw new IdempotencyClaimLostError(this.#settings);
      } catch (error) {
        if (error instanceof IdempotencyClaimLostError) throw error;
        // A store that did not answer in time may yet apply the write: a retry
        // could then find the record completed and wrongly report the claim lost,
        // and would keep the response waiting longer still.
        if (error instanceof StoreTimeoutError) throw new IdempotencyStoreError('complete', error);
        failure = error;
        if (attempt < COMPLETE_ATTEMPTS) await sleep(20 * attempt);
      }
    }
    throw new IdempotencyStoreError('complete', failure);
  }

  async markCompleted(): Promise<void> {
    await this.#end();
  }

  async advance(recoveryPoint: string): Promise<void> {
    assertNonEmptyString('recoveryPoint', recoveryPoint);
    if (this.#ended) throw new IdempotencyClaimLostError(this.#settings);
    let held: boolean;
    try {
      const { scope, key } = this.#settings;
      held = await this.#store.advance({ scope, key, owner: this.owner, recoveryPoint });
    } catch (error) {
      throw new IdempotencyStoreError('advance', error);
    }
    if (!held) throw new IdempotencyClaimLostError(this.#settings);
  }

  async abandon(options: { readonly keep?: boolean } = {}): Promise<void> {
    if (this.#ended) return;
    await this.#end();
    try {
      const { scope, key } = this.#settings;
      await this.#store.abandon({ scope, key, owner: this.owner, keep: options.keep === true });
    } catch (error) {
      // The lease still runs out on its own; the record is never stuck.
      throw new IdempotencyStoreError('abandon', error);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#ended) return;
    await this.abandon().catch(() => undefined);
  }
}
