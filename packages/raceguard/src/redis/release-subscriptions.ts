/**
 * Wake-ups for Redis lock waiters: the release script `PUBLISH`es on the
 * lock's channel, and waiters subscribed to it stop sleeping at once
 * instead of at their next poll. Shared by `RedisLock` and `Redlock`.
 */
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
