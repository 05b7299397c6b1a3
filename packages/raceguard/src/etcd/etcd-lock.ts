import { isAborted } from '../core/abort.js';
import { randomBytes } from 'node:crypto';
import { pause } from '../core/deadline.js';
import { AbortedError, InvalidArgumentError, messageOf } from '../core/errors.js';
import { createLeaseHandle } from '../core/lease-handle.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockSessionLostError,
  UnsupportedLockOptionError,
  type AcquireOptions,
  type LeaseSupport,
  type LockHandle,
  acquireDeadline,
  TryOnceLocker,
  checkDriftFactor,
  checkAcquire,
  checkLease,
  checkOptionNames,
  leaseEnd,
} from '../core/lock.js';
import { assertPlainObject } from '../core/validate.js';

/** Longest wait on a watch before the queue is listed again. */
const RECHECK_MS = 1000;

/** An etcd lease, as `etcd3`'s `Lease` provides it. */
export interface EtcdLeaseLike {
  grant(): Promise<string>;
  put(key: string): {
    value(value: string): { exec(): Promise<{ header?: { revision?: string } }> };
  };
  keepaliveOnce(): Promise<{ TTL?: string | number | null }>;
  revoke(): Promise<unknown>;
  on(event: 'lost', listener: () => void): unknown;
}

/** An etcd watcher, as `etcd3`'s `Watcher` provides it. */
export interface EtcdWatcherLike {
  on(event: 'delete' | 'error', listener: () => void): unknown;
  cancel(): Promise<unknown>;
}

/** The slice of an `etcd3` client the lock calls: `new Etcd3(...)` satisfies it; raceguard never imports the driver. */
export interface EtcdClientLike {
  lease(ttlSeconds: number, options: { autoKeepAlive: boolean }): EtcdLeaseLike;
  getAll(): {
    prefix(prefix: string): {
      sort(
        target: 'Create',
        order: 'Ascend',
      ): {
        exec(): Promise<{
          kvs: readonly { key: { toString(): string }; create_revision: string }[];
          header?: { revision?: string };
        }>;
      };
    };
  };
  watch(): {
    key(key: string): { startRevision(revision: string): { create(): Promise<EtcdWatcherLike> } };
  };
  get(key: string): { exists(): Promise<boolean> };
}

/** Options of {@link EtcdLock}. */
export interface EtcdLockOptions {
  /** An `etcd3` client (`new Etcd3(...)`). */
  readonly client: EtcdClientLike;
  /** @default 'raceguard/lock/' */
  readonly prefix?: string;
  /**
   * Default lease. etcd counts leases in whole seconds with a minimum of
   * two, so a `ttlMs` that is not a whole number of seconds of at least
   * 2000 is refused rather than rounded.
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
export class EtcdLock extends TryOnceLocker {
  readonly #client: EtcdClientLike;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #driftFactor: number;
  readonly #lease: LeaseSupport;

  constructor(options: EtcdLockOptions) {
    super();
    assertPlainObject('options', options);
    checkOptionNames('EtcdLock', options, ['client', 'prefix', 'ttlMs', 'driftFactor'], {
      pollMs: 'does not poll: waiters watch the key ahead of them',
    });
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
    this.#lease = {
      backend: 'EtcdLock',
      ttlMs: this.#ttlMs,
      minTtlMs: 2000,
      refuseTtl: (ttlMs) =>
        ttlMs % 1000 === 0 ? undefined : 'counts leases in whole seconds: give a multiple of 1000',
    };
    checkLease('options.ttlMs', this.#ttlMs, this.#lease);
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
    const checked = checkAcquire(key, options, this.#lease);
    const { ttlMs, waitMs, signal, started, deadline } = checked;
    const { beforeDeadline } = acquireDeadline(key, checked);
    const inTime = <T>(what: string, run: () => Promise<T>): Promise<T> =>
      beforeDeadline(this.#call(what, run), `etcd did not answer in time (${what})`);
    const ttlSeconds = ttlMs / 1000;
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
      const leaseId = await inTime('grant a lease', () => lease.grant());
      // Escaped, so lock "a" never counts the waiters of lock "a/b" as its own.
      const queue = `${this.#prefix}${encodeURIComponent(key)}/`;
      // Named by the lease, so an operator sees whose entry it is.
      const mine = `${queue}${leaseId}`;
      const put = await inTime('enqueue', () =>
        lease.put(mine).value(randomBytes(8).toString('hex')).exec(),
      );
      const myRevision = BigInt(put.header?.revision ?? '0');
      for (;;) {
        if (isAborted(signal)) throw new AbortedError(signal?.reason);
        const range = await inTime('list contenders', () =>
          this.#client.getAll().prefix(queue).sort('Create', 'Ascend').exec(),
        );
        if (!range.kvs.some((kv) => kv.key.toString() === mine))
          throw new LockSessionLostError(key, 'its etcd lease expired while waiting');
        const ahead = range.kvs.filter((kv) => BigInt(kv.create_revision) < myRevision);
        const predecessor = ahead.at(-1);
        if (predecessor === undefined) break;
        const remaining = deadline - performance.now();
        if (waitMs === 0 || remaining <= 0) {
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
          inTime,
        );
      }
      // Renew once on grant, so the lease's validity starts now rather than at enqueue time.
      const leaseStart = performance.now();
      const renewed = await inTime('renew a lease', () => lease.keepaliveOnce());
      if (Number(renewed.TTL ?? 0) <= 0)
        throw new LockSessionLostError(key, 'its etcd lease expired as it was granted');
      if (isAborted(signal)) throw new AbortedError(signal?.reason);
      granted = true;
      return this.#handle(
        key,
        lease,
        myRevision,
        leaseEnd(leaseStart, ttlMs, this.#driftFactor),
        ttlSeconds,
        options,
      );
    } finally {
      clearInterval(keepalive);
      // Leaving the queue (timeout, abort, failure) revokes the lease, which
      // deletes our key; not awaited, so a deadline never waits on a stalled etcd.
      if (!granted) void lease.revoke().catch(() => undefined);
    }
  }

  async #waitForDelete(
    keys: readonly string[],
    fromRevision: bigint,
    ms: number,
    signal: AbortSignal | undefined,
    inTime: <T>(what: string, run: () => Promise<T>) => Promise<T>,
  ): Promise<void> {
    // Watching from the revision the listing was read at, so a delete in between is not missed.
    // Our own key is watched too: if our lease expires while we wait, we learn it at once.
    const watchers = await inTime('watch the queue', () =>
      Promise.all(
        keys.map((key) =>
          this.#client.watch().key(key).startRevision(fromRevision.toString()).create(),
        ),
      ),
    );
    try {
      // On timeout, and at least every RECHECK_MS, re-list: a watch event
      // delivered before our listener was attached must not strand us.
      await pause(Math.min(ms, RECHECK_MS), {
        signal,
        wakeOn: (wake) => {
          for (const watcher of watchers) {
            watcher.on('delete', wake);
            watcher.on('error', wake);
          }
          // A key deleted before the watch was listening: look now rather than at the next recheck.
          void Promise.all(keys.map((key) => this.#client.get(key).exists())).then(
            (present) => (present.every(Boolean) ? undefined : wake()),
            () => undefined,
          );
          // The watchers are cancelled below, with their listeners.
          return () => undefined;
        },
      });
    } finally {
      // Not awaited: an abort must not wait on a stalled etcd.
      void Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
    }
  }

  #handle(
    key: string,
    lease: EtcdLeaseLike,
    token: bigint,
    validUntil: number,
    ttlSeconds: number,
    options: AcquireOptions,
  ): LockHandle {
    return createLeaseHandle({
      backend: 'EtcdLock',
      key,
      token,
      validUntil,
      ttlMs: ttlSeconds * 1000,
      acquireOptions: options,
      renew: async (leaseMs) => {
        if (leaseMs !== ttlSeconds * 1000)
          throw new UnsupportedLockOptionError(
            'EtcdLock',
            'ttlMs',
            `renews a lease only to the length it was granted (${ttlSeconds * 1000} ms): an etcd keepalive cannot change a lease's TTL`,
            leaseMs,
          );
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
