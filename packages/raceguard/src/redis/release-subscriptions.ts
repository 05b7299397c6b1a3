/**
 * Wake-ups for Redis lock waiters: the release script `PUBLISH`es on the
 * lock's channel, and waiters subscribed to it stop sleeping at once
 * instead of at their next poll. Shared by `RedisLock` and `Redlock`.
 */
import { pause } from '../core/deadline.js';
import type { LeaseRoundTrips } from '../core/lease-acquire.js';
import type { RedisSubscriberLike } from './types.js';

type Wake = () => void;

/** The subscriptions of one subscriber connection, shared by every waiter of a lock instance. */
export class ReleaseSubscriptions {
  readonly #subscriber: RedisSubscriberLike;
  readonly #channels = new Map<
    string,
    { readonly wakers: Set<Wake>; readonly ready: Promise<void> }
  >();

  readonly #onMessage = (channel: string): void => {
    for (const wake of this.#channels.get(channel)?.wakers ?? []) wake();
  };

  constructor(subscriber: RedisSubscriberLike) {
    this.#subscriber = subscriber;
    subscriber.on('message', this.#onMessage);
  }

  /** Stop listening on the connection (where it can remove listeners). */
  close(): void {
    this.#subscriber.off?.('message', this.#onMessage);
  }

  /**
   * Subscribe to `channel` (once for all its waiters) and resolve when the
   * subscription is active; the returned function unsubscribes when the
   * last waiter leaves. A failed `SUBSCRIBE` still resolves: waiters poll.
   */
  async subscribe(channel: string): Promise<() => Promise<void>> {
    let entry = this.#channels.get(channel);
    if (entry === undefined) {
      entry = {
        wakers: new Set(),
        ready: this.#subscriber.subscribe(channel).then(
          () => undefined,
          () => undefined,
        ),
      };
      this.#channels.set(channel, entry);
    }
    const current = entry;
    const marker: Wake = () => undefined;
    current.wakers.add(marker);
    // Later waiters wait for the same SUBSCRIBE, so none of them listens before it is active.
    await current.ready;
    return async () => {
      current.wakers.delete(marker);
      if (current.wakers.size === 0 && this.#channels.get(channel) === current) {
        this.#channels.delete(channel);
        await this.#subscriber.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  /** Register a pause's wake-up on `channel` (for `pause`'s `wakeOn`). */
  wakeOn(channel: string): (wake: Wake) => () => unknown {
    return (wake) => {
      const wakers = this.#channels.get(channel)?.wakers;
      wakers?.add(wake);
      return () => wakers?.delete(wake);
    };
  }
}

/**
 * The wait between the attempts of one acquire on `channel`, for
 * `acquireLease`: the first wait subscribes on every node (only once an
 * attempt failed, so an uncontended acquire costs one round trip) and
 * returns at once, since a release before the subscription woke nobody;
 * later waits sleep until a release message or the pause ends. Without
 * subscriptions, waiters poll. `end` unsubscribes without waiting: a
 * deadline must not wait for a paused server's `UNSUBSCRIBE`.
 */
export function waitForReleaseOn(
  subscriptions: readonly ReleaseSubscriptions[],
  channel: string,
): Required<Pick<LeaseRoundTrips, 'waitForRelease' | 'end'>> {
  let subscribeTried = false;
  let unsubscribe: (() => Promise<unknown>) | undefined;
  const wakeOn =
    subscriptions.length === 0
      ? undefined
      : (wake: Wake): (() => void) => {
          const off = subscriptions.map((s) => s.wakeOn(channel)(wake));
          return () => off.forEach((f) => f());
        };
  return {
    async waitForRelease(wait) {
      if (!subscribeTried && subscriptions.length > 0) {
        subscribeTried = true;
        const subscribed = await wait.beforeDeadline(
          Promise.all(subscriptions.map((s) => s.subscribe(channel))),
          (late) => Promise.all(late.map((done) => done())),
        );
        unsubscribe = () => Promise.all(subscribed.map((done) => done()));
        return;
      }
      await pause(wait.pauseMs(wait.leaseLeftMs), { signal: wait.signal, wakeOn });
    },
    end() {
      if (unsubscribe) void unsubscribe().catch(() => undefined);
    },
  };
}
