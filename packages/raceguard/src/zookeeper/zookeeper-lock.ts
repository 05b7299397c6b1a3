import { randomUUID } from 'node:crypto';
import { isAborted } from '../core/abort.js';
import { pause } from '../core/deadline.js';
import { AbortedError, InvalidArgumentError, messageOf } from '../core/errors.js';
import { createSessionHandle } from '../core/session-handle.js';
import {
  LockAcquireTimeoutError,
  LockBackendError,
  LockSessionLostError,
  type AcquireOptions,
  type LeaseSupport,
  type LockHandle,
  acquireDeadline,
  checkAcquire,
  checkOptionNames,
  TryOnceLocker,
} from '../core/lock.js';
import { assertPlainObject } from '../core/validate.js';

/** ZooKeeper protocol constants (the driver is an optional dependency, so its runtime values are not imported). */
const EPHEMERAL_SEQUENTIAL = 3;
const NODE_DELETED = 2;
const NO_NODE = -101;

/** The driver's callbacks; its errors are `Error`s or ZooKeeper `Exception`s. */
type Callback<T> = (error: unknown, value: T) => void;

/** A node's metadata, as far as the lock reads it. */
interface StatLike {
  readonly czxid: Buffer;
}

/**
 * The slice of a `node-zookeeper-client` `Client` the lock calls: the
 * driver's client satisfies it; raceguard never imports the driver.
 */
export interface ZooKeeperClientLike {
  create(path: string, mode: number, callback: Callback<string>): void;
  mkdirp(path: string, callback: Callback<string>): void;
  getChildren(path: string, callback: Callback<string[]>): void;
  exists(path: string, callback: Callback<StatLike | null>): void;
  exists(
    path: string,
    watcher: (event: { readonly type: number }) => void,
    callback: Callback<StatLike | null>,
  ): void;
  remove(path: string, version: number, callback: (error: unknown) => void): void;
  getSessionTimeout(): number;
  on(event: 'expired' | 'disconnected' | 'connected', listener: () => void): unknown;
}

/** Options of {@link ZooKeeperLock}. */
export interface ZooKeeperLockOptions {
  /**
   * A connected `node-zookeeper-client` client. Its session is the lease of
   * every lock taken through it: choose the session timeout there.
   */
  readonly client: ZooKeeperClientLike;
  /**
   * Parent path of the lock nodes: an absolute path without a trailing slash.
   * @default '/raceguard/locks'
   */
  readonly prefix?: string;
}

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

const NO_LEASE =
  "has no lease of its own: the client's session is the lease (choose the session timeout when creating the client)";

/**
 * ZooKeeper's lock recipe: each contender creates an ephemeral sequential
 * node under the lock's path; the lowest sequence holds the lock, and every
 * other contender watches only the node just before its own, so the lock is
 * granted in arrival order without a thundering herd. The fencing token is
 * the node's creation zxid, ZooKeeper's totally ordered transaction id.
 *
 * Nodes are "protected" as in Apache Curator: their name carries a random
 * id, so a create whose reply was lost (a connection drop mid-call) is found
 * by that id and removed instead of blocking the lock for the whole session.
 *
 * The lease is the client's session: ephemeral nodes vanish when the session
 * expires (a crashed, paused or partitioned client), which frees the lock.
 * When the session expires, every handle's `signal` aborts and waiting calls
 * fail with `LockSessionLostError`; while the connection is down, a handle
 * is reported lost once the session timeout has passed. `ttlMs` and
 * `autoExtend` are refused; `extend()` checks that the node still exists.
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
export class ZooKeeperLock extends TryOnceLocker {
  readonly #client: ZooKeeperClientLike;
  readonly #prefix: string;
  readonly #lease: LeaseSupport = { backend: 'ZooKeeperLock', ttlMs: undefined, noLease: NO_LEASE };
  /** Listeners of the session's events, one set per lock instance (no listener per grant). */
  readonly #onExpired = new Set<() => void>();
  readonly #onDisconnected = new Set<() => void>();
  readonly #onConnected = new Set<() => void>();

  constructor(options: ZooKeeperLockOptions) {
    super();
    assertPlainObject('options', options);
    checkOptionNames('ZooKeeperLock', options, ['client', 'prefix'], {
      ttlMs: NO_LEASE,
      pollMs: 'does not poll: waiters watch the node ahead of them',
      root: 'calls it prefix (root was its name before 0.1)',
    });
    const client = options.client as Partial<ZooKeeperClientLike> | undefined;
    if (typeof client?.create !== 'function' || typeof client.getChildren !== 'function') {
      throw new InvalidArgumentError(
        'options.client',
        'a node-zookeeper-client Client',
        options.client,
      );
    }
    const prefix = options.prefix ?? '/raceguard/locks';
    if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.endsWith('/')) {
      throw new InvalidArgumentError(
        'options.prefix',
        'an absolute path without a trailing slash',
        prefix,
      );
    }
    this.#client = options.client;
    this.#prefix = prefix;
    const dispatch = (set: Set<() => void>) => () => {
      for (const listener of [...set]) listener();
    };
    this.#client.on('expired', dispatch(this.#onExpired));
    this.#client.on('disconnected', dispatch(this.#onDisconnected));
    this.#client.on('connected', dispatch(this.#onConnected));
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
    const checked = checkAcquire(key, options, this.#lease);
    const { waitMs, signal, started, deadline } = checked;
    const { beforeDeadline } = acquireDeadline(key, checked);
    if (key.includes('/')) throw new InvalidArgumentError('key', 'a key without "/"', key);
    const client = this.#client;
    const parent = `${this.#prefix}/${key}`;
    const guid = randomUUID();
    const inTime = <T>(what: string, run: (callback: Callback<T>) => void): Promise<T> =>
      beforeDeadline(call(what, run), `ZooKeeper did not answer in time (${what})`);
    let expired = false;
    let wakeWaiter: (() => void) | undefined;
    const onExpired = (): void => {
      expired = true;
      wakeWaiter?.();
    };
    this.#onExpired.add(onExpired);
    let mine: string | undefined;
    let granted = false;
    try {
      await inTime<string>('create the lock path', (cb) => client.mkdirp(parent, cb));
      try {
        mine = await inTime<string>('enqueue', (cb) =>
          client.create(`${parent}/_c_${guid}-lock-`, EPHEMERAL_SEQUENTIAL, cb),
        );
      } catch (error) {
        // The create may have happened with its reply lost: find our node by its id.
        mine = await this.#findOwn(parent, guid);
        throw error;
      }
      const myName = mine.slice(parent.length + 1);
      for (;;) {
        if (expired) throw new LockSessionLostError(key, 'the ZooKeeper session expired');
        if (isAborted(signal)) throw new AbortedError(signal?.reason);
        const children = await inTime<string[]>('list contenders', (cb) =>
          client.getChildren(parent, cb),
        );
        if (!children.includes(myName))
          throw new LockSessionLostError(key, 'its queue node vanished (the session expired?)');
        const ahead = children
          .filter((c) => sequenceOf(c) < sequenceOf(myName))
          .sort((a, b) => sequenceOf(a) - sequenceOf(b));
        const predecessor = ahead.at(-1);
        if (predecessor === undefined) break;
        const remaining = deadline - performance.now();
        if (waitMs === 0 || remaining <= 0)
          throw new LockAcquireTimeoutError(
            key,
            performance.now() - started,
            `${ahead.length} contender(s) ahead`,
          );
        await pause(remaining, {
          signal,
          wakeOn: (wake) => {
            wakeWaiter = wake;
            // Watch only the node just ahead; if it is already gone, look again at once.
            client.exists(
              `${parent}/${predecessor}`,
              (event) => {
                if (event.type === NODE_DELETED) wake();
              },
              (error, stat) => {
                if (error || !stat) wake();
              },
            );
            return () => (wakeWaiter = undefined);
          },
        });
      }
      const stat = await inTime<StatLike | null>('read the lock node', (cb) =>
        client.exists(mine as string, cb),
      );
      if (stat === null) throw new LockSessionLostError(key, 'its node vanished as it was granted');
      if (isAborted(signal)) throw new AbortedError(signal?.reason);
      granted = true;
      return this.#handle(key, mine, stat.czxid.readBigInt64BE(0), options);
    } finally {
      this.#onExpired.delete(onExpired);
      // Leaving the queue; not awaited, so a deadline never waits on a stalled server.
      const node = mine;
      if (!granted && node !== undefined)
        void call<null>('leave the queue', (cb) =>
          client.remove(node, -1, (e) => cb(e, null)),
        ).catch(() => undefined);
    }
  }

  /** The node this call created under `parent`, found by its id; `undefined` if there is none. */
  async #findOwn(parent: string, guid: string): Promise<string | undefined> {
    try {
      const children = await call<string[]>('list contenders', (cb) =>
        this.#client.getChildren(parent, cb),
      );
      const name = children.find((child) => child.includes(guid));
      return name === undefined ? undefined : `${parent}/${name}`;
    } catch {
      // Unreachable: the session's end removes the node, if it exists.
      return undefined;
    }
  }

  #handle(key: string, path: string, token: bigint, options: AcquireOptions): LockHandle {
    const client = this.#client;
    return createSessionHandle({
      backend: 'ZooKeeperLock',
      key,
      token,
      acquireOptions: options,
      noLease: `ZooKeeperLock ${NO_LEASE}`,
      watch: (session) => {
        let disconnectTimer: NodeJS.Timeout | undefined;
        const stopTimer = (): void => {
          if (disconnectTimer !== undefined) clearTimeout(disconnectTimer);
          disconnectTimer = undefined;
        };
        const onExpired = (): void => session.lose('expired');
        // Disconnected: the session, and the lock with it, survives only until the session timeout.
        const onDisconnected = (): void => {
          const timeoutMs = client.getSessionTimeout();
          session.holdsUntil(performance.now() + timeoutMs);
          stopTimer();
          disconnectTimer = setTimeout(onExpired, timeoutMs);
          disconnectTimer.unref();
        };
        const onConnected = (): void => {
          stopTimer();
          session.holdsUntil(Number.POSITIVE_INFINITY);
        };
        this.#onExpired.add(onExpired);
        this.#onDisconnected.add(onDisconnected);
        this.#onConnected.add(onConnected);
        return () => {
          stopTimer();
          this.#onExpired.delete(onExpired);
          this.#onDisconnected.delete(onDisconnected);
          this.#onConnected.delete(onConnected);
        };
      },
      // No lease to renew (the client's heartbeats keep the session): check the node is still ours.
      stillHeld: async () =>
        (await call<StatLike | null>('check a lock', (cb) => client.exists(path, cb))) !== null,
      lostReason: 'expired',
      failedCheckLoses: false,
      end: async (wasHeld) => {
        try {
          await call<null>('release a lock', (cb) => client.remove(path, -1, (e) => cb(e, null)));
        } catch (error) {
          // A lost lock's node goes with its session; failing to delete it early is not an error.
          if (wasHeld && !isNoNode(error)) throw error;
        }
      },
    });
  }
}
