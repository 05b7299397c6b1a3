import { isAborted } from '../core/abort.js';
import type { Client, Event, Exception, Stat } from 'node-zookeeper-client';
import { AbortedError, InvalidArgumentError, messageOf } from '../core/errors.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockLostError,
  LockNotOwnerError,
  type AcquireOptions,
  type LockHandle,
  type Locker,
  tryOnce,
} from '../core/lock.js';
import { assertAbortSignal, assertNonEmptyString, assertPlainObject } from '../core/validate.js';

/** ZooKeeper protocol constants (the driver is an optional dependency, so its runtime values are not imported). */
const EPHEMERAL_SEQUENTIAL = 3;
const NODE_DELETED = 2;
const NO_NODE = -101;

/** Options of {@link ZooKeeperLock}. */
export interface ZooKeeperLockOptions {
  /** A connected `node-zookeeper-client` client. Its session is the lease of every lock taken through it. */
  readonly client: Client;
  /**
   * Parent path of the lock nodes.
   * @default '/raceguard/locks'
   */
  readonly root?: string;
}

type Callback<T> = (error: Error | Exception | null, value: T) => void;

function call<T>(what: string, run: (callback: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    run((error, value) => {
      if (error)
        reject(new LockBackendError(`ZooKeeper failed to ${what}: ${messageOf(error)}`, error));
      else resolve(value);
    });
  });
}

function isNoNode(error: unknown): boolean {
  return (
    error instanceof LockBackendError &&
    (error.cause as { code?: number } | undefined)?.code === NO_NODE
  );
}

const sequenceOf = (name: string): number => Number(name.slice(name.lastIndexOf('-') + 1));

/**
 * ZooKeeper's lock recipe: each contender creates an ephemeral sequential
 * node under the lock's path; the lowest sequence holds the lock, and every
 * other contender watches only the node just before its own, so the lock is
 * granted in arrival order without a thundering herd. The fencing token is
 * the node's creation zxid, ZooKeeper's totally ordered transaction id.
 *
 * The lease is the client's session: ephemeral nodes vanish when the session
 * expires (a crashed, paused or partitioned client), which frees the lock.
 * When the session expires, every handle's `signal` aborts and waiting calls
 * fail; while the connection is down, a handle is reported lost once the
 * session timeout has passed. `ttlMs` and `autoExtend` do not apply:
 * choose the session timeout when creating the client.
 *
 * @example
 * ```ts
 * import zookeeper from 'node-zookeeper-client';
 * const client = zookeeper.createClient('127.0.0.1:2181', { sessionTimeout: 10_000 });
 * client.connect();
 * const locks = new ZooKeeperLock({ client });
 * await withLock(locks, 'ledger', (lock) => writeWithToken(lock.token));
 * ```
 */
export class ZooKeeperLock implements Locker {
  readonly #client: Client;
  readonly #root: string;

  constructor(options: ZooKeeperLockOptions) {
    assertPlainObject('options', options);
    if (
      typeof options.client?.create !== 'function' ||
      typeof options.client.getChildren !== 'function'
    ) {
      throw new InvalidArgumentError(
        'options.client',
        'a node-zookeeper-client Client',
        options.client,
      );
    }
    const root = options.root ?? '/raceguard/locks';
    if (!root.startsWith('/') || root.endsWith('/')) {
      throw new InvalidArgumentError(
        'options.root',
        'an absolute path without a trailing slash',
        root,
      );
    }
    this.#client = options.client;
    this.#root = root;
  }

  /**
   * Queue for the lock on `key` and wait (up to `waitMs`) until every
   * earlier contender is gone.
   *
   * @example
   * ```ts
   * await using lock = await locks.acquire('migrations', { waitMs: 10_000 });
   * ```
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    assertNonEmptyString('key', key);
    if (key.includes('/')) throw new InvalidArgumentError('key', 'a key without "/"', key);
    assertPlainObject('options', options);
    const { waitMs = Number.POSITIVE_INFINITY, signal } = options;
    if (!(typeof waitMs === 'number' && waitMs >= 0)) {
      throw new InvalidArgumentError('options.waitMs', 'a number of ms >= 0 (or Infinity)', waitMs);
    }
    assertAbortSignal('options.signal', signal);
    if (signal?.aborted === true) throw new AbortedError(signal.reason);

    const client = this.#client;
    const parent = `${this.#root}/${key}`;
    const started = performance.now();
    let expired = false;
    let wake: (() => void) | undefined;
    const onExpired = (): void => {
      expired = true;
      wake?.();
    };
    client.once('expired', onExpired);
    await call<string>('create the lock path', (cb) => client.mkdirp(parent, cb));
    const mine = await call<string>('enqueue', (cb) =>
      client.create(`${parent}/lock-`, EPHEMERAL_SEQUENTIAL, cb),
    );
    const myName = mine.slice(parent.length + 1);
    let granted = false;
    try {
      for (;;) {
        if (expired)
          throw new LockLostError(
            key,
            'backend',
            new Error('the ZooKeeper session expired while waiting'),
          );
        if (isAborted(signal)) throw new AbortedError(signal?.reason);
        const children = await call<string[]>('list contenders', (cb) =>
          client.getChildren(parent, cb),
        );
        if (!children.includes(myName)) {
          throw new LockBackendError(
            `the queue node of lock ${JSON.stringify(key)} vanished (session expired?)`,
            undefined,
          );
        }
        const ahead = children
          .filter((c) => sequenceOf(c) < sequenceOf(myName))
          .sort((a, b) => sequenceOf(a) - sequenceOf(b));
        const predecessor = ahead.at(-1);
        if (predecessor === undefined) break;
        const remaining = started + waitMs - performance.now();
        if (remaining <= 0)
          throw new LockAcquireTimeoutError(
            key,
            performance.now() - started,
            `${ahead.length} contender(s) ahead`,
          );
        await new Promise<void>((resolve, reject) => {
          const done = (): void => {
            wake = undefined;
            if (timer !== undefined) clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
          };
          const onAbort = (): void => {
            done();
            reject(new AbortedError(signal?.reason));
          };
          const timer = Number.isFinite(remaining)
            ? setTimeout(() => {
                done();
                resolve();
              }, remaining)
            : undefined;
          wake = () => {
            done();
            resolve();
          };
          signal?.addEventListener('abort', onAbort, { once: true });
          // Watch only the node just ahead; if it is already gone, look again at once.
          client.exists(
            `${parent}/${predecessor}`,
            (event: Event) => {
              if (event.type === NODE_DELETED) wake?.();
            },
            (error: Error | Exception | null, stat: Stat | null) => {
              if (error || !stat) wake?.();
            },
          );
        });
      }
      const stat = await call<Stat>('read the lock node', (cb) => client.exists(mine, cb));
      if (isAborted(signal)) throw new AbortedError(signal?.reason);
      granted = true;
      return this.#handle(key, mine, stat.czxid.readBigInt64BE(0), options);
    } finally {
      client.removeListener('expired', onExpired);
      if (!granted)
        await call<null>('leave the queue', (cb) =>
          client.remove(mine, -1, (e) => cb(e, null)),
        ).catch(() => undefined);
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

  #handle(key: string, path: string, token: bigint, options: AcquireOptions = {}): LockHandle {
    const client = this.#client;
    const controller = new AbortController();
    let held = true;
    let validUntil = Number.POSITIVE_INFINITY;
    let disconnectTimer: NodeJS.Timeout | undefined;

    const lose = (reason: 'expired' | 'backend'): void => {
      if (!held) return;
      held = false;
      cleanup();
      const lost = new LockLostError(key, reason);
      controller.abort(lost);
      try {
        options.onLost?.(lost);
      } catch {
        // Loss is reported, never thrown from an event handler.
      }
    };
    const onExpired = (): void => lose('expired');
    // Disconnected: the session, and the lock with it, survives only until the session timeout.
    const onDisconnected = (): void => {
      const timeoutMs = client.getSessionTimeout();
      validUntil = performance.now() + timeoutMs;
      disconnectTimer = setTimeout(() => lose('expired'), timeoutMs);
      disconnectTimer.unref();
    };
    const onConnected = (): void => {
      if (disconnectTimer !== undefined) clearTimeout(disconnectTimer);
      validUntil = Number.POSITIVE_INFINITY;
    };
    const cleanup = (): void => {
      if (disconnectTimer !== undefined) clearTimeout(disconnectTimer);
      client.removeListener('expired', onExpired);
      client.removeListener('disconnected', onDisconnected);
      client.removeListener('connected', onConnected);
    };
    client.on('expired', onExpired);
    client.on('disconnected', onDisconnected);
    client.on('connected', onConnected);

    let released: Promise<void> | undefined;
    const release = (): Promise<void> =>
      (released ??= (async () => {
        const wasHeld = held;
        held = false;
        cleanup();
        try {
          await call<null>('release a lock', (cb) => client.remove(path, -1, (e) => cb(e, null)));
        } catch (error) {
          // A lost lock's node goes with its session; failing to delete it early is not an error.
          if (wasHeld && !isNoNode(error)) throw error;
        }
      })());

    return {
      key,
      token,
      get validUntil() {
        return validUntil;
      },
      signal: controller.signal,
      extend: async () => {
        // The session is the lease; it is renewed by the client's heartbeats.
        if (!held || released !== undefined) throw new LockNotOwnerError(key);
        await call<Stat>('check a lock', (cb) => client.exists(path, cb)).then((stat) => {
          if (!stat) {
            lose('expired');
            throw new LockNotOwnerError(key);
          }
        });
      },
      release,
      [Symbol.asyncDispose]: release,
    };
  }
}
