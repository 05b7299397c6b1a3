/**
 * The in-process tier of `LeaseCache`: copies of Redis values in this
 * process's memory, kept coherent across instances by the cache's bus (a
 * Redis pub/sub channel on which every change of a value is announced).
 *
 * The stale-set guarantee holds here as in Redis: a copy is stored only
 * under a ticket taken before the Redis read that produced it, and a bus
 * message for the key that arrives before the copy is stored voids the
 * ticket (the read may have seen the value the message replaced; replies
 * and messages come on two connections, in no fixed order). While the bus
 * is down (subscriber disconnected, not yet subscribed) the tier holds and
 * serves nothing: a message lost then could never be applied. It counts as
 * up only once a probe it published on the bus came back through its own
 * subscription: a `SUBSCRIBE` that resolved (node-redis resolves at once for
 * a channel it believes subscribed) proves nothing about the server.
 */
import { randomBytes } from 'node:crypto';
import { nameOf } from './scripts.js';
import type { RedisSubscriberLike } from '../redis/shared.js';

/** A pending Redis read whose result may become a local copy. */
export interface Ticket {
  readonly key: string;
  readonly generation: number;
  voided: boolean;
}

interface Entry {
  readonly data: string;
  readonly expiresAt: number;
}

/** What the tier tells its cache. */
export type TierState = 'up' | 'down';

/** How often a tier that is down subscribes and probes its bus again. */
const PROBE_EVERY_MS = 200;
/** How often a tier that is up sends a heartbeat probe through its bus. */
const HEARTBEAT_EVERY_MS = 50;
/**
 * How long a returned probe vouches for the bus: a bus that goes silent
 * without closing (a stalled subscriber connection) stops the tier from
 * serving within this long of the last probe that came back.
 */
export const BUS_TRUST_MS = 200;

export class LocalTier {
  readonly #subscriber: RedisSubscriberLike;
  readonly #channel: string;
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #onState: (state: TierState) => void;
  readonly #publish: (message: string) => Promise<unknown>;
  /**
   * Probes in flight, with when they were sent: one that comes back proves
   * every bus message published before it was delivered (pub/sub keeps the
   * server's order).
   */
  readonly #probes = new Map<string, number>();
  #probeTimer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** Copies are served and stored only until then (the last returned probe's send time + BUS_TRUST_MS). */
  #trustedUntil = 0;
  readonly #entries = new Map<string, Entry>();
  readonly #tickets = new Map<string, Set<Ticket>>();
  #up = false;
  #closed = false;
  /** Bumped whenever the bus goes down: tickets from before can no longer store. */
  #generation = 0;

  constructor(
    subscriber: RedisSubscriberLike,
    channel: string,
    options: {
      maxEntries: number;
      ttlMs: number;
      onState: (state: TierState) => void;
      /** PUBLISH `message` on the bus channel (through the command connection). */
      publish: (message: string) => Promise<unknown>;
    },
  ) {
    this.#subscriber = subscriber;
    this.#channel = channel;
    this.#maxEntries = options.maxEntries;
    this.#ttlMs = options.ttlMs;
    this.#onState = options.onState;
    this.#publish = options.publish;
    subscriber.on('message', this.#onMessage);
    subscriber.on('close', this.#onClose);
    this.#probe();
  }

  /** Whether the tier serves and stores (the bus is subscribed). */
  get up(): boolean {
    return this.#up;
  }

  /** Whether the bus vouched for the tier recently; if not, the tier goes down. */
  #trusted(): boolean {
    if (!this.#up) return false;
    if (performance.now() <= this.#trustedUntil) return true;
    this.#down(); // silent: nothing it holds can be trusted
    return false;
  }

  /** The local copy of `key`, if fresh. */
  lookup(key: string): string | undefined {
    if (!this.#trusted()) return undefined;
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= performance.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    // Most recently used last: eviction takes the first.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.data;
  }

  /** Take a ticket before a Redis read of `key`. */
  begin(key: string): Ticket | undefined {
    if (!this.#trusted()) return undefined;
    const ticket: Ticket = { key, generation: this.#generation, voided: false };
    let tickets = this.#tickets.get(key);
    if (tickets === undefined) {
      tickets = new Set();
      this.#tickets.set(key, tickets);
    }
    tickets.add(ticket);
    return ticket;
  }

  /** The read of `ticket` finished: keep `data` as the local copy unless a bus message voided it. */
  settle(ticket: Ticket | undefined, data: string | undefined): void {
    if (ticket === undefined) return;
    const tickets = this.#tickets.get(ticket.key);
    tickets?.delete(ticket);
    if (tickets?.size === 0) this.#tickets.delete(ticket.key);
    if (
      data === undefined ||
      ticket.voided ||
      !this.#trusted() ||
      ticket.generation !== this.#generation
    ) {
      return;
    }
    this.#entries.delete(ticket.key);
    this.#entries.set(ticket.key, { data, expiresAt: performance.now() + this.#ttlMs });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  /** Forget `key` here and void the reads in flight (this process changed it). */
  drop(key: string): void {
    this.#entries.delete(key);
    for (const ticket of this.#tickets.get(key) ?? []) ticket.voided = true;
  }

  /** Stop listening and forget everything. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#down();
    clearTimeout(this.#probeTimer);
    this.#subscriber.off?.('message', this.#onMessage);
    this.#subscriber.off?.('close', this.#onClose);
    await this.#subscriber.unsubscribe(this.#channel).catch(() => undefined);
  }

  readonly #onMessage = (from: string, message: string): void => {
    if (from === this.#channel) this.#apply(message);
  };

  readonly #onClose = (): void => this.#down();

  #apply(message: string): void {
    let identities: unknown;
    try {
      identities = JSON.parse(message);
    } catch {
      identities = undefined;
    }
    if (!Array.isArray(identities)) {
      const probe = (identities as { probe?: unknown } | null | undefined)?.probe;
      const sentAt = typeof probe === 'string' ? this.#probes.get(probe) : undefined;
      if (sentAt !== undefined) {
        for (const [nonce, at] of this.#probes) if (at <= sentAt) this.#probes.delete(nonce);
        this.#trustedUntil = Math.max(this.#trustedUntil, sentAt + BUS_TRUST_MS);
        // A probe that took longer than the trust it gives vouches for nothing:
        // coming up on it would mean going down again at the next lookup.
        if (!this.#up && this.#trustedUntil > performance.now()) {
          clearTimeout(this.#probeTimer);
          this.#up = true;
          this.#startHeartbeat();
          this.#onState('up');
        }
      } else if (typeof probe !== 'string') {
        // Not ours to read: safest to forget everything.
        this.#clear();
      }
      return;
    }
    for (const identity of identities) {
      if (typeof identity === 'string') this.drop(nameOf(identity));
    }
  }

  /** A new probe, registered as sent now; the message to publish. It vouches for the bus when it comes back. */
  #newProbe(): string {
    const nonce = randomBytes(9).toString('base64url');
    this.#probes.set(nonce, performance.now());
    return JSON.stringify({ probe: nonce });
  }

  /** While up: a probe every HEARTBEAT_EVERY_MS, so a silent bus is noticed within BUS_TRUST_MS. */
  #startHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => {
      // Probes that never came back are not kept for ever.
      if (this.#probes.size > 64) this.#probes.delete(this.#probes.keys().next().value as string);
      this.#publish(this.#newProbe()).catch(() => undefined);
    }, HEARTBEAT_EVERY_MS);
    this.#heartbeat.unref();
  }

  /** While down: subscribe (again), publish a probe, and look again shortly. */
  #probe(): void {
    clearTimeout(this.#probeTimer);
    if (this.#closed || this.#up) return;
    this.#subscriber
      .subscribe(this.#channel)
      // Timed from its publication: a subscribe queued behind a reconnect is not the bus's delay.
      .then(() => this.#publish(this.#newProbe()))
      .catch(() => undefined); // still down: the next round tries again
    this.#probeTimer = setTimeout(() => this.#probe(), PROBE_EVERY_MS);
    this.#probeTimer.unref();
  }

  #down(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#trustedUntil = 0;
    this.#clear();
    // Probes sent before may come back from the old connection's buffer: only new ones count.
    this.#probes.clear();
    if (this.#up) {
      this.#up = false;
      this.#onState('down');
    }
    this.#probe();
  }

  #clear(): void {
    this.#generation++;
    this.#entries.clear();
    for (const tickets of this.#tickets.values()) {
      for (const ticket of tickets) ticket.voided = true;
    }
  }
}
