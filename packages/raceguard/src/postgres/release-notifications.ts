/**
 * Wake-ups for lock waiters by PostgreSQL `LISTEN`/`NOTIFY`: a release
 * notifies a channel with a digest of the key, and waiters on that key stop
 * sleeping at once instead of at their next poll.
 */
import { createHash } from 'node:crypto';
import { pause } from '../core/deadline.js';
import { AbortedError, InvalidArgumentError } from '../core/errors.js';
import { quoteIdentifier } from './identifiers.js';

/**
 * The slice of a node-postgres `Client` that listens: a dedicated,
 * connected `pg.Client` (not a pooled connection, and not through a
 * transaction-pooling proxy, where `LISTEN` does not work).
 */
export interface PgListenerLike {
  query(text: string): Promise<unknown>;
  on(
    event: 'notification',
    listener: (message: { channel: string; payload?: string | undefined }) => void,
  ): unknown;
}

/** Check a `listener` option. */
export function assertListener(argument: string, value: unknown): asserts value is PgListenerLike {
  const candidate = value as Partial<PgListenerLike> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.query !== 'function' ||
    typeof candidate.on !== 'function'
  ) {
    throw new InvalidArgumentError(argument, 'a connected pg.Client (query and on)', value);
  }
}

/** A registration for the release of one key; see {@link ReleaseNotifications.watch}. */
export interface ReleaseWatch {
  /**
   * Sleep up to `ms`, or less if the key is released meanwhile (or was
   * since {@link ReleaseNotifications.watch}). Rejects with `AbortedError`
   * when `signal` fires.
   */
  sleep(ms: number, signal: AbortSignal | undefined): Promise<void>;
  /** Unregister; also ends a sleep in progress. */
  stop(): void;
  /** Whether a release woke this watch (it then owes the key an attempt, or a {@link ReleaseNotifications.passOn}). */
  readonly woken: boolean;
}

/** The `LISTEN` side, shared by the waiters of one lock instance. */
export class ReleaseNotifications {
  /** The channel of a lock table: bounded in length, whatever the table's name. */
  static channelOf(table: string): string {
    return `raceguard_released_${createHash('sha256').update(table).digest('hex').slice(0, 16)}`;
  }

  /** The payload that names `key` on its table's channel. */
  static payloadOf(key: string): string {
    return createHash('sha256').update(key).digest('base64url');
  }

  readonly #listener: PgListenerLike;
  readonly #channel: string;
  readonly #wakers = new Map<string, Set<() => void>>();
  #listening: Promise<boolean> | undefined;

  constructor(listener: PgListenerLike, channel: string) {
    this.#listener = listener;
    this.#channel = channel;
    listener.on('notification', (message) => {
      if (message.channel !== this.#channel || message.payload === undefined) return;
      // One release, one waiter: the longest-waiting one here. Waking them
      // all would have every waiter race for the key on every release; the
      // others keep their place and are woken by the next release.
      this.passOn(message.payload);
    });
  }

  /**
   * Wake the longest-waiting watcher of `payload`, if any: what a
   * notification does, and what a woken waiter that gives up (aborted
   * before its attempt) does so that the release is not lost on it.
   */
  passOn(payload: string): void {
    const first = this.#wakers.get(payload)?.values().next();
    if (first?.done === false) first.value();
  }

  /**
   * `LISTEN` on the channel, once per instance. Resolves `false` if that
   * failed (callers poll; the next waiter tries again).
   */
  listen(): Promise<boolean> {
    this.#listening ??= this.#listener
      .query(`LISTEN ${quoteIdentifier(this.#channel, 'channel')}`)
      .then(
        () => true,
        () => {
          this.#listening = undefined;
          return false;
        },
      );
    return this.#listening;
  }

  /**
   * Start watching for the release of the key whose payload is `payload`.
   * Each notification wakes one watcher of this instance, in the order they
   * started watching.
   */
  watch(payload: string): ReleaseWatch {
    let released = false;
    let wakeSleeper: (() => void) | undefined;
    const unregister = (): void => {
      const current = this.#wakers.get(payload);
      current?.delete(wake);
      if (current?.size === 0) this.#wakers.delete(payload);
    };
    const wake = (): void => {
      released = true;
      unregister();
      wakeSleeper?.();
    };
    let set = this.#wakers.get(payload);
    if (set === undefined) {
      set = new Set();
      this.#wakers.set(payload, set);
    }
    set.add(wake);
    const stop = (): void => {
      wakeSleeper?.();
      unregister();
    };
    return {
      stop,
      get woken() {
        return released;
      },
      sleep: (ms, signal) =>
        released
          ? signal?.aborted === true
            ? Promise.reject(new AbortedError(signal.reason))
            : Promise.resolve()
          : pause(ms, {
              signal,
              wakeOn: (wakeUp) => {
                wakeSleeper = wakeUp;
                return () => (wakeSleeper = undefined);
              },
            }),
    };
  }
}
