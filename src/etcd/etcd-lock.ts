import { isAborted } from '../core/abort.js';
import { randomBytes } from 'node:crypto';
import type { Etcd3, Lease } from 'etcd3';
import { AbortedError, InvalidArgumentError, messageOf } from '../core/errors.js';
import { createLeaseHandle } from '../core/lease-handle.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockLostError,
  type AcquireOptions,
  type LockHandle,
  type Locker,
  tryOnce,
  checkDriftFactor,
  checkAcquire,
  leaseEnd,
} from '../core/lock.js';
import { assertPlainObject, assertPositiveInteger } from '../core/validate.js';

/** Longest wait on a watch before the queue is listed again. */
const RECHECK_MS = 1000;

/** Options of {@link EtcdLock}. */
export interface EtcdLockOptions {
  /** An `etcd3` client. */
  readonly client: Etcd3;
  /** @default 'raceguard/lock/' */
  readonly prefix?: string;
  /**
   * Default lease. etcd counts leases in whole seconds and enforces a
   * minimum of about two seconds; raceguard rounds up and computes validity
   * from the value it asked for.
   * @default 30000
   */
  readonly ttlMs?: number;
  /** Share of the lease subtracted for clock drift. @default 0.01 */
  readonly driftFactor?: number;
}

/**
 * A lock on etcd, after etcd's own concurrency recipe: each contender
 * writes a key under the lock's prefix, attached to a lease of its own; the
 * key with the lowest create revision holds the lock, and every other
 * contender watches only the key just before its own (no thundering herd),
 * so the lock is granted in arrival order. The create revision is the
 * fencing token: minted by the cluster's consensus with the key, strictly
 * increasing in grant order.
 *
 * The lease is kept alive while waiting; while holding, it is renewed only
 * with `autoExtend` (or `extend()`), otherwise it runs out after `ttlMs`
 * and the holder's `signal` aborts. A contender whose lease expires (a
 * paused or partitioned process) loses its place, holding or waiting.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * const locks = new EtcdLock({ client: new Etcd3({ hosts: 'http://127.0.0.1:2379' }) });
 * await withLock(locks, 'ledger', async (lock) => {
 *   await fencedUpdate(pool, { table: 'ledger', key: { id: 1 }, set: { total }, token: lock.token });
 * }, { ttlMs: 10_000, autoExtend: true });
 * ```
 */
export class EtcdLock implements Locker {
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #driftFactor: number;

  constructor(options: EtcdLockOptions) {
    assertPlainObject('options', options);
    if (typeof options.client?.lease !== 'function' || typeof options.client.watch !== 'function') {
      throw new InvalidArgumentError(
        'options.client',
        'an etcd3 client (new Etcd3(...))',
        options.client,
      );
    }
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'raceguard/lock/';
    this.#ttlMs = options.ttlMs ?? 30_000;
    this.#driftFactor = options.driftFactor ?? 0.01;
    assertPositiveInteger('options.ttlMs', this.#ttlMs);
    checkDriftFactor(this.#driftFactor);
  }

  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw new LockBackendError(`etcd failed to ${what}: ${messageOf(error)}`, error);
    }
  }

  /**
   * Queue for the lock on `key` and wait (up to `waitMs`) until every
   * earlier contender is gone.
   *
   * @example
   * ```ts
   * await using lock = await locks.acquire('migrations', { ttlMs: 15_000, autoExtend: true });
   * ```
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    const { ttlMs, waitMs, signal } = checkAcquire(key, options, this.#ttlMs);

    const started = performance.now();
    const ttlSeconds = Math.max(2, Math.ceil(ttlMs / 1000));
    const lease = this.#client.lease(ttlSeconds, { autoKeepAlive: false });
    lease.on('lost', () => undefined);
    let granted = false;
    // Keep the queue entry alive while waiting.
    const keepalive = setInterval(
      () => void lease.keepaliveOnce().catch(() => undefined),
      (ttlSeconds * 1000) / 3,
    );
    keepalive.unref();
    try {
      const leaseId = await this.#call('grant a lease', () => lease.grant());
      const queue = `${this.#prefix}${key}/`;
      const mine = `${queue}${leaseId}`;
      const sentAt = performance.now();
      const put = await this.#call('enqueue', () =>
        lease.put(mine).value(randomBytes(8).toString('hex')).exec(),
      );
      const myRevision = BigInt(put.header?.revision ?? '0');
      let leaseStart = sentAt;
      for (;;) {
        if (isAborted(signal)) throw new AbortedError(signal?.reason);
        const range = await this.#call('list contenders', () =>
          this.#client.getAll().prefix(queue).sort('Create', 'Ascend').exec(),
        );
        const ahead = range.kvs.filter((kv) => BigInt(kv.create_revision) < myRevision);
        if (!range.kvs.some((kv) => kv.key.toString() === mine)) {
          throw new LockBackendError(
            `etcd lost the queue entry of lock ${JSON.stringify(key)}: its lease expired while waiting`,
            undefined,
          );
        }
        const predecessor = ahead.at(-1);
        if (predecessor === undefined) break;
        const remaining = started + waitMs - performance.now();
        if (remaining <= 0) {
          throw new LockAcquireTimeoutError(
            key,
            performance.now() - started,
            `${ahead.length} contender(s) ahead`,
          );
        }
        await this.#waitForDelete(
          [predecessor.key.toString(), mine],
          BigInt(range.header?.revision ?? '0') + 1n,
          remaining,
          signal,
        );
      }
      // Renew once on grant, so the lease's validity starts now rather than at enqueue time.
      leaseStart = performance.now();
      const renewed = await this.#call('renew a lease', () => lease.keepaliveOnce());
      if (Number(renewed.TTL ?? 0) <= 0) throw new LockLostError(key, 'expired');
      if (isAborted(signal)) throw new AbortedError(signal?.reason);
      granted = true;
      return this.#handle(
        key,
        lease,
        myRevision,
        leaseEnd(leaseStart, ttlSeconds * 1000, this.#driftFactor),
        ttlSeconds,
        options,
      );
    } finally {
      clearInterval(keepalive);
      // Leaving the queue (timeout, abort, failure) revokes the lease, which deletes our key.
      if (!granted) await lease.revoke().catch(() => undefined);
    }
  }

  /**
   * Take the lock on `key` only if nobody holds or waits for it.
   *
   * @example
   * ```ts
   * const lock = await locks.tryAcquire('compaction');
   * ```
   */
  tryAcquire(
    key: string,
    options: Omit<AcquireOptions, 'waitMs'> = {},
  ): Promise<LockHandle | undefined> {
    return tryOnce(() => this.acquire(key, { ...options, waitMs: 0 }));
  }

  async #waitForDelete(
    keys: readonly string[],
    fromRevision: bigint,
    ms: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // Watching from the revision the listing was read at, so a delete in between is not missed.
    // Our own key is watched too: if our lease expires while we wait, we learn it at once.
    const watchers = await this.#call('watch the queue', () =>
      Promise.all(
        keys.map((key) =>
          this.#client.watch().key(key).startRevision(fromRevision.toString()).create(),
        ),
      ),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        };
        const onAbort = (): void => {
          done();
          reject(new AbortedError(signal?.reason));
        };
        const wake = (): void => {
          done();
          resolve();
        };
        // On timeout, and at least every RECHECK_MS, re-list: a watch event
        // delivered before our listener was attached must not strand us.
        const timer = setTimeout(wake, Math.min(ms, RECHECK_MS));
        for (const watcher of watchers) {
          watcher.on('delete', wake);
          watcher.on('error', wake);
        }
        if (signal?.aborted === true) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        // A key deleted before the watch was listening: look now rather than at the next recheck.
        void Promise.all(keys.map((key) => this.#client.get(key).exists())).then(
          (present) => (present.every(Boolean) ? undefined : wake()),
          () => undefined,
        );
      });
    } finally {
      await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
    }
  }

  #handle(
    key: string,
    lease: Lease,
    token: bigint,
    validUntil: number,
    ttlSeconds: number,
    options: AcquireOptions,
  ): LockHandle {
    return createLeaseHandle({
      key,
      token,
      validUntil,
      ttlMs: ttlSeconds * 1000,
      acquireOptions: options,
      renew: async () => {
        const sentAt = performance.now();
        const response = await this.#call('renew a lease', () => lease.keepaliveOnce());
        const ttl = Number(response.TTL ?? 0);
        return ttl > 0
          ? leaseEnd(sentAt, Math.min(ttl, ttlSeconds) * 1000, this.#driftFactor)
          : undefined;
      },
      release: async () => {
        await this.#call('release a lock', () => lease.revoke());
      },
    });
  }
}
