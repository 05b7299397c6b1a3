import { within } from '../core/deadline.js';
import { InvalidArgumentError, messageOf } from '../core/errors.js';
import { LeaseLocker, leaseSettings, type LeaseRoundTrips } from '../core/lease-acquire.js';
import { LockBackendError, checkOptionNames } from '../core/lock.js';
import { assertPlainObject, assertPositiveInteger } from '../core/validate.js';
import {
  ACQUIRE,
  EXTEND,
  RELEASE,
  checkFenceCounter,
  fenceKey,
  type FenceCounter,
} from './lock-scripts.js';
import { ReleaseSubscriptions, waitForReleaseOn } from './release-subscriptions.js';
import type { RedisClientLike, RedisSubscriberLike } from './types.js';

/** How one node answered an acquisition attempt. */
export interface NodeVote {
  /** Index of the node in `clients`. */
  readonly node: number;
  /** `granted`: it took the lock for us; `held`: someone else holds it there; `error`: failed or too slow. */
  readonly vote: 'granted' | 'held' | 'error';
  /** The error message, for `error`. */
  readonly detail?: string;
}

/**
 * Too many nodes failed or timed out for a majority to be possible: a
 * {@link LockBackendError} that carries every node's vote. Raised at the
 * first attempt that shows it, not when the wait runs out.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof QuorumNotReachedError) log.error(e.votes); }
 * ```
 */
export class QuorumNotReachedError extends LockBackendError {
  readonly key: string;
  readonly quorum: number;
  readonly votes: readonly NodeVote[];

  constructor(key: string, quorum: number, votes: readonly NodeVote[]) {
    const summary = votes
      .map((v) => `node ${v.node}: ${v.vote}${v.detail ? ` (${v.detail})` : ''}`)
      .join('; ');
    super(
      `lock ${JSON.stringify(key)}: ${votes.filter((v) => v.vote === 'granted').length} of ${votes.length} nodes granted, ${quorum} needed: ${summary}`,
      undefined,
      'RACEGUARD_QUORUM_NOT_REACHED',
    );
    this.key = key;
    this.quorum = quorum;
    this.votes = votes;
  }
}

/** Options of {@link Redlock}. */
export interface RedlockOptions {
  /** One client per independent Redis server (not replicas of one another). 5 is the usual count. */
  readonly clients: readonly RedisClientLike[];
  /**
   * Subscriber connections, one per node in the order of `clients` (ioredis:
   * `client.duplicate()`), to wake waiters the moment a lock is released on
   * any node. Without them waiters poll.
   */
  readonly subscribers?: readonly RedisSubscriberLike[];
  /** @default 'raceguard:' */
  readonly prefix?: string;
  /** Default lease; at least `MIN_LEASE_MS` (100). @default 30000 */
  readonly ttlMs?: number;
  /**
   * Share of the lease subtracted for clock drift between servers.
   * @default 0.01
   */
  readonly driftFactor?: number;
  /**
   * How long to wait for one node's answer before counting it as failed;
   * keep it far below the lease so a dead or paused node costs little.
   * @default 50
   */
  readonly callTimeoutMs?: number;
  /**
   * Upper bound of the random pause between attempts while waiting (also
   * the fallback when a release notification is missed).
   * @default 50
   */
  readonly pollMs?: number;
  /**
   * Where each node counts fencing tokens: one counter per lock name, or
   * one `shared` by every name (one key per node however many names are
   * locked). As `RedisLockOptions.fenceCounter`, which see.
   * @default 'per-key'
   */
  readonly fenceCounter?: FenceCounter;
}

/**
 * Redlock: a lease lock over N independent Redis servers. An attempt asks
 * every node in parallel and succeeds when a majority granted it and the
 * time spent, plus a drift margin, still leaves the lease valid; otherwise
 * the attempt is undone on every node and retried after a random pause.
 *
 * Fencing: each node mints its own counter, and the handle's `token` is the
 * largest granted. Per-node counters are not a consensus token: after a
 * node restarts without persistence, or after partial grants left the
 * counters apart, a later grant can carry a smaller token than an earlier
 * one. Use the tokens as a best effort; when a stale write would corrupt
 * data, take the lock from PostgreSQL, etcd or ZooKeeper, whose tokens are
 * totally ordered. Likewise a node restarting empty forgets the locks it
 * granted; keep restarted nodes out for at least one lease (Redlock's
 * "delayed restart").
 *
 * @example
 * ```ts
 * const redlock = new Redlock({ clients: [a, b, c, d, e] });
 * await withLock(redlock, 'payout:42', () => payOut(42), { ttlMs: 10_000 });
 * ```
 */
export class Redlock extends LeaseLocker {
  readonly #clients: readonly RedisClientLike[];
  readonly #prefix: string;
  readonly #callTimeoutMs: number;
  readonly #fenceCounter: FenceCounter;
  readonly #subscriptions: readonly ReleaseSubscriptions[];
  /** Votes needed: a strict majority of the nodes. */
  readonly quorum: number;

  constructor(options: RedlockOptions) {
    assertPlainObject('options', options);
    checkOptionNames(
      'Redlock',
      options,
      [
        'clients',
        'subscribers',
        'prefix',
        'ttlMs',
        'pollMs',
        'driftFactor',
        'callTimeoutMs',
        'fenceCounter',
      ],
      {
        retryDelayMs: 'calls it pollMs (retryDelayMs was its name before 0.1)',
        nodeTimeoutMs:
          "calls it callTimeoutMs, the one name of a round trip's timeout on every backend",
      },
    );
    super({
      ...leaseSettings('Redlock', options, {
        pollMs: 50,
        silent: 'the nodes did not answer in time',
      }),
      jitter: true,
      // An attempt that failed undoes itself on every node.
      undoUnknown: false,
    });
    const clients: readonly RedisClientLike[] = options.clients;
    if (!isList(clients) || clients.length === 0) {
      throw new InvalidArgumentError(
        'options.clients',
        'a non-empty array of Redis clients',
        clients,
      );
    }
    clients.forEach((c: RedisClientLike, i) => {
      if (typeof c?.evalsha !== 'function') {
        throw new InvalidArgumentError(
          `options.clients[${i}]`,
          'a Redis client with eval and evalsha',
          c,
        );
      }
    });
    this.#clients = [...clients];
    this.quorum = Math.floor(clients.length / 2) + 1;
    this.#prefix = options.prefix ?? 'raceguard:';
    this.#callTimeoutMs = options.callTimeoutMs ?? 50;
    this.#fenceCounter = checkFenceCounter(options.fenceCounter);
    assertPositiveInteger('options.callTimeoutMs', this.#callTimeoutMs);
    const subscribers = options.subscribers ?? [];
    if (!isList(subscribers) || (subscribers.length > 0 && subscribers.length !== clients.length))
      throw new InvalidArgumentError(
        'options.subscribers',
        `one subscriber per client (${clients.length}), or none`,
        subscribers,
      );
    this.#subscriptions = subscribers.map((subscriber) => new ReleaseSubscriptions(subscriber));
  }

  /** Run a script on every node at once; each answer is a value or an error (timeouts included). */
  #fanOut(
    script: typeof ACQUIRE,
    keys: string[],
    args: (string | number)[],
  ): Promise<PromiseSettledResult<unknown>[]> {
    return Promise.allSettled(
      this.#clients.map((client) => {
        const ms = this.#callTimeoutMs;
        return within(script.run(client, keys, args), {
          deadline: performance.now() + ms,
          timeout: () => new Error(`no answer within ${ms}ms`),
        });
      }),
    );
  }

  /** The round trips on `key`: each asks every node; waits end on a release message from any node. */
  protected roundTrips(key: string): LeaseRoundTrips {
    const lock = `${this.#prefix}lock:{${key}}`;
    const fence = fenceKey(this.#prefix, key, this.#fenceCounter);
    const channel = `${this.#prefix}released:{${key}}`;
    return {
      tryGrant: async (owner, ttlMs) => {
        const answers = await this.#fanOut(ACQUIRE, [lock, fence], [owner, ttlMs]);
        const tokens: bigint[] = [];
        const votes = answers.map((answer, node): NodeVote => {
          if (answer.status === 'rejected')
            return { node, vote: 'error', detail: messageOf(answer.reason) };
          const [granted, value] = answer.value as [number, number];
          if (granted !== 1) return { node, vote: 'held' };
          tokens.push(BigInt(value));
          return { node, vote: 'granted' };
        });
        if (tokens.length >= this.quorum)
          return { token: tokens.reduce((a, b) => (b > a ? b : a)) };
        // Undo the partial grant everywhere, so the nodes that said yes do not block others for a
        // lease; not awaited, so a dead node's timeout does not delay the answer. It deletes only
        // this attempt's owner, so it cannot touch a later grant.
        void this.#fanOut(RELEASE, [lock], [owner, channel]);
        // Fail fast: with too many nodes failing, no later attempt can reach a majority either.
        const failed = votes.filter((v) => v.vote === 'error').length;
        if (failed > this.#clients.length - this.quorum)
          throw new QuorumNotReachedError(key, this.quorum, votes);
        return {};
      },
      renew: async (owner, leaseMs) => {
        const answers = await this.#fanOut(EXTEND, [lock], [owner, leaseMs]);
        return (
          answers.filter((a) => a.status === 'fulfilled' && a.value === 1).length >= this.quorum
        );
      },
      release: (owner) => this.#releaseEverywhere(key, owner),
      ...waitForReleaseOn(this.#subscriptions, channel),
    };
  }

  /**
   * Release on every node. Released once a majority has answered (a
   * minority that did not lets its copy lapse with the lease, and cannot
   * form a majority for anyone); fails with {@link LockBackendError},
   * naming the nodes, when fewer than a majority could be reached: the
   * lock may then stay held until its lease ends.
   */
  async #releaseEverywhere(key: string, owner: string): Promise<void> {
    const answers = await this.#fanOut(
      RELEASE,
      [`${this.#prefix}lock:{${key}}`],
      [owner, `${this.#prefix}released:{${key}}`],
    );
    const failed = answers.flatMap((answer, node) =>
      answer.status === 'rejected' ? [`node ${node}: ${messageOf(answer.reason)}`] : [],
    );
    if (failed.length > this.#clients.length - this.quorum) {
      throw new LockBackendError(
        `Redlock failed to release lock ${JSON.stringify(key)} on ${failed.length} of ${answers.length} node(s), so a majority may still hold it until its lease ends: ${failed.join('; ')}`,
        answers.find((a) => a.status === 'rejected')?.reason,
      );
    }
  }
}

/** `Array.isArray` without narrowing the checked value's type to `any[]`. */
const isList = (value: unknown): boolean => Array.isArray(value);
