/** An idempotency store in this process's memory. */
import { assertKnownOptions, assertPlainObject, assertPositiveInteger } from '../core/validate.js';
import type { ClaimRequest, ClaimResult, IdempotencyStore, OwnerRequest } from './store.js';

interface MemoryRecord {
  fingerprint: string;
  owner: string | null;
  leaseEnd: number;
  expiresAt: number;
  result: string | null;
  recoveryPoint: string | null;
}

/** Options of {@link MemoryIdempotencyStore}. */
export interface MemoryIdempotencyStoreOptions {
  /** Sweep expired records every this many claims. @default 1000 */
  readonly sweepEvery?: number;
}

/**
 * Idempotency records in a `Map`: for a single process and for tests. Gives
 * no protection across processes or restarts; use the PostgreSQL or Redis
 * store when more than one instance serves the API.
 *
 * @example
 * ```ts
 * const store = new MemoryIdempotencyStore();
 * const { value } = await idempotent(store, { scope: userId, key, payload: body }, () => charge(body));
 * ```
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #records = new Map<string, MemoryRecord>();
  readonly #sweepEvery: number;
  #claims = 0;

  constructor(options: MemoryIdempotencyStoreOptions = {}) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, new Set(['sweepEvery']));
    this.#sweepEvery = options.sweepEvery ?? 1000;
    assertPositiveInteger('options.sweepEvery', this.#sweepEvery);
  }

  /** Number of live records (expired ones are dropped first). */
  get size(): number {
    this.#sweep(performance.now());
    return this.#records.size;
  }

  claim(request: ClaimRequest): Promise<ClaimResult> {
    const now = performance.now();
    this.#claims += 1;
    if (this.#claims % this.#sweepEvery === 0) this.#sweepOldest(now);
    const id = recordKey(request);
    const found = this.#records.get(id);
    if (found === undefined || found.expiresAt <= now) {
      this.#records.set(id, {
        fingerprint: request.fingerprint,
        owner: request.owner,
        leaseEnd: now + request.leaseMs,
        expiresAt: now + request.ttlMs,
        result: null,
        recoveryPoint: null,
      });
      return Promise.resolve({ kind: 'claimed', resumed: false, recoveryPoint: null });
    }
    if (found.fingerprint !== request.fingerprint) return Promise.resolve({ kind: 'mismatch' });
    if (found.result !== null) return Promise.resolve({ kind: 'completed', result: found.result });
    if (found.owner !== null && found.leaseEnd > now) {
      return Promise.resolve({ kind: 'in-progress', retryAfterMs: found.leaseEnd - now });
    }
    found.owner = request.owner;
    found.leaseEnd = now + request.leaseMs;
    return Promise.resolve({
      kind: 'claimed',
      resumed: true,
      recoveryPoint: found.recoveryPoint,
    });
  }

  complete(request: OwnerRequest & { result: string; ttlMs: number }): Promise<boolean> {
    const found = this.#owned(request);
    if (found === undefined) return Promise.resolve(false);
    found.result = request.result;
    found.owner = null;
    found.expiresAt = performance.now() + request.ttlMs;
    return Promise.resolve(true);
  }

  renew(request: OwnerRequest & { leaseMs: number }): Promise<boolean> {
    const found = this.#owned(request);
    if (found === undefined) return Promise.resolve(false);
    found.leaseEnd = performance.now() + request.leaseMs;
    return Promise.resolve(true);
  }

  abandon(request: OwnerRequest & { keep: boolean }): Promise<void> {
    const found = this.#owned(request);
    if (found !== undefined) {
      if (request.keep) found.owner = null;
      else this.#records.delete(recordKey(request));
    }
    return Promise.resolve();
  }

  advance(request: OwnerRequest & { recoveryPoint: string }): Promise<boolean> {
    const found = this.#owned(request);
    if (found === undefined) return Promise.resolve(false);
    found.recoveryPoint = request.recoveryPoint;
    return Promise.resolve(true);
  }

  #owned(request: OwnerRequest): MemoryRecord | undefined {
    const found = this.#records.get(recordKey(request));
    const now = performance.now();
    // The owner id is the fence: a takeover replaces it. A lapsed lease that
    // nobody took over still lets its owner finish.
    if (found === undefined || found.owner !== request.owner || found.expiresAt <= now) {
      return undefined;
    }
    return found;
  }

  /**
   * Drop expired records from the front of the map (insertion order, which
   * with one TTL is close to expiry order), stopping at the first live one:
   * bounded work per sweep however many records there are. Expiry is also
   * checked on every access, so a record this misses is never served.
   */
  #sweepOldest(now: number): void {
    for (const [id, record] of this.#records) {
      if (record.expiresAt > now) return;
      this.#records.delete(id);
    }
  }

  #sweep(now: number): void {
    for (const [id, record] of this.#records) {
      if (record.expiresAt <= now) this.#records.delete(id);
    }
  }
}

function recordKey(id: { scope: string; key: string }): string {
  // Length-prefixed so that no (scope, key) pair can collide with another.
  return `${id.scope.length}:${id.scope}${id.key}`;
}
