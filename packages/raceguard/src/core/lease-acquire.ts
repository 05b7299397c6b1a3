/**
 * The acquire loop of every leased lock (Redis, Redlock, PostgreSQL and
 * MySQL lease tables), written once. A backend supplies only its round
 * trips ({@link LeaseRoundTrips}: try a grant, renew, release, wait for a
 * release); the loop, the deadline and `signal`, the hand-back of a grant
 * that answers late, the lease arithmetic and the handle live here.
 */
import { isAborted } from './abort.js';
import { AbortedError } from './errors.js';
import { createLeaseHandle } from './lease-handle.js';
import { nextOwnerId } from './owner-id.js';
import {
  acquireDeadline,
  checkAcquire,
  checkDriftFactor,
  checkLease,
  leaseEnd,
  TryOnceLocker,
  type AcquireOptions,
  type LeaseSupport,
  type LockHandle,
} from './lock.js';
import { assertPositiveInteger } from './validate.js';

/**
 * How one grant attempt went: `token` when this owner now holds the key;
 * otherwise the key is held by someone else, and `leaseLeftMs` says for how
 * long, when the attempt's reply told (Redis' script does; SQL tables are
 * read by {@link LeaseRoundTrips.waitForRelease}).
 */
export type LeaseAttempt =
  | { readonly token: bigint; readonly leaseLeftMs?: undefined }
  | { readonly token?: undefined; readonly leaseLeftMs?: number | undefined };

/** What a backend's wait between two attempts is given; see {@link LeaseRoundTrips.waitForRelease}. */
export interface ReleaseWait {
  readonly signal: AbortSignal | undefined;
  /** What the failed attempt said of the holder's lease, if anything. */
  readonly leaseLeftMs: number | undefined;
  /**
   * How long to sleep, given what is known of the holder's lease: the
   * shortest of the poll interval, the lease left (plus 1 ms: a key just
   * freed is tried again at once), and the time until the last attempt that
   * can still answer before the deadline; at least 1 ms.
   */
  pauseMs(leaseLeftMs?: number): number;
  /**
   * Race a round trip of the wait (a `LISTEN`, a `SUBSCRIBE`, a read of the
   * lease) against the acquire's deadline and signal; a reply that comes
   * after the caller gave up goes to `late`.
   */
  beforeDeadline<T>(call: Promise<T>, late?: (value: T) => unknown): Promise<T>;
}

/**
 * The round trips of a leased lock on one key, made by a backend for one
 * `acquire` (see {@link LeaseLockProtocol.forKey}). Each rejects with the
 * backend's typed error (`LockBackendError`) on failure.
 */
export interface LeaseRoundTrips {
  /** Once before the first attempt (MySQL creates the key's row). */
  prepare?(): Promise<unknown>;
  /** One attempt to take the key for `owner`, with a lease of `ttlMs`. */
  tryGrant(owner: string, ttlMs: number): Promise<LeaseAttempt>;
  /** Renew `owner`'s lease for `leaseMs`; `false` when `owner` no longer holds the key. */
  renew(owner: string, leaseMs: number): Promise<boolean>;
  /** Give the key up if `owner` holds it (owner-checked: harmless otherwise). */
  release(owner: string): Promise<void>;
  /**
   * Wait for the key to be released, at most {@link ReleaseWait.pauseMs}.
   * May resolve at once: right after subscribing to release notifications,
   * the loop must try again, since a release just before the subscription
   * woke nobody. Rejects with `AbortedError` when the signal fires.
   */
  waitForRelease(wait: ReleaseWait): Promise<void>;
  /** Once when the acquire ends; `failed` when it did not return a handle. Never throws. */
  end?(failed: boolean): void;
}

/** A leased lock backend, as {@link acquireLease} needs it. */
export interface LeaseLockProtocol {
  /** What the backend accepts as a lease (`backend` names the locker in errors and events). */
  readonly lease: LeaseSupport;
  /** Share of the lease subtracted for clock drift. */
  readonly driftFactor: number;
  /** Longest pause between attempts. */
  readonly pollMs: number;
  /** Pause a random part of `pollMs` instead of all of it (Redlock's retry jitter). @default false */
  readonly jitter?: boolean;
  /** Why a round trip that outlived the deadline failed, e.g. `Redis did not answer in time`. */
  readonly silent: string;
  /**
   * Whether an attempt that failed without an answer (a driver timeout, a
   * dropped connection) may still grant on the server, and must be released
   * by owner afterwards. `false` where the attempt undoes itself (Redlock).
   * @default true
   */
  readonly undoUnknown?: boolean;
  /** The round trips for `key`, once per acquire. */
  forKey(key: string): LeaseRoundTrips;
}

/**
 * Wait up to `options.waitMs` for the lease on `key`: attempt, and between
 * attempts wait for a release (by notification where the backend has one,
 * by polling the lease otherwise).
 *
 * - Every round trip is held to the deadline and `signal`. A grant that
 *   answers after the caller gave up is released at once; one whose reply
 *   never came is released by owner afterwards, in case the server made it.
 * - A grant whose lease ran out before its reply arrived is given back and
 *   the wait goes on.
 * - The handle renews and releases through the backend's round trips
 *   ({@link createLeaseHandle}).
 *
 * Rejects with `LockAcquireTimeoutError`, `AbortedError` or the backend's
 * `LockBackendError`; invalid options reject before any I/O.
 */
export async function acquireLease(
  protocol: LeaseLockProtocol,
  key: string,
  options: AcquireOptions,
): Promise<LockHandle> {
  const checked = checkAcquire(key, options, protocol.lease);
  const { ttlMs, waitMs, signal, deadline } = checked;
  const { beforeDeadline, timeout } = acquireDeadline(key, checked);
  const { silent, driftFactor } = protocol;
  const trips = protocol.forKey(key);
  const release = (owner: string): Promise<void> => trips.release(owner);
  let failed = true;
  try {
    if (trips.prepare !== undefined) await beforeDeadline(trips.prepare(), silent);
    for (;;) {
      if (isAborted(signal)) throw new AbortedError(signal?.reason);
      const owner = nextOwnerId();
      const sentAt = performance.now();
      const attempt = await beforeDeadline(
        trips.tryGrant(owner, ttlMs),
        silent,
        (late) => (late.token === undefined ? undefined : release(owner)),
        protocol.undoUnknown === false ? undefined : () => release(owner),
      );
      const answeredAt = performance.now();
      let detail: string;
      if (attempt.token !== undefined) {
        const validUntil = leaseEnd(sentAt, ttlMs, driftFactor);
        if (!isAborted(signal) && answeredAt < validUntil) {
          failed = false;
          return leaseHandle(
            protocol,
            trips,
            key,
            owner,
            attempt.token,
            validUntil,
            ttlMs,
            options,
          );
        }
        // Granted after the caller gave up, or lapsed in flight: give it back.
        await release(owner).catch(() => undefined);
        if (isAborted(signal)) throw new AbortedError(signal?.reason);
        detail = `the grant's ${ttlMs} ms lease ran out before its reply arrived`;
      } else {
        detail = 'held by another owner';
      }
      if (waitMs === 0 || deadline - performance.now() <= 0) throw timeout(detail);
      await trips.waitForRelease({
        signal,
        leaseLeftMs: attempt.leaseLeftMs,
        pauseMs: (leaseLeftMs) => {
          const poll = protocol.jitter === true ? Math.random() * protocol.pollMs : protocol.pollMs;
          // Wake early enough for a last attempt to answer before the deadline.
          const last = deadline - performance.now() - (answeredAt - sentAt);
          const lease = leaseLeftMs !== undefined && leaseLeftMs >= 0 ? leaseLeftMs + 1 : poll;
          return Math.max(1, Math.min(last, poll, lease));
        },
        beforeDeadline: (call, late) => beforeDeadline(call, silent, late),
      });
    }
  } finally {
    trips.end?.(failed);
  }
}

/** The handle of a lease `owner` was granted. */
function leaseHandle(
  protocol: LeaseLockProtocol,
  trips: LeaseRoundTrips,
  key: string,
  owner: string,
  token: bigint,
  validUntil: number,
  ttlMs: number,
  options: AcquireOptions,
): LockHandle {
  const { driftFactor } = protocol;
  return createLeaseHandle({
    backend: protocol.lease.backend,
    key,
    token,
    validUntil,
    ttlMs,
    acquireOptions: options,
    renew: async (leaseMs) => {
      const sentAt = performance.now();
      const renewed = await trips.renew(owner, leaseMs);
      const until = leaseEnd(sentAt, leaseMs, driftFactor);
      // A renewal that answers after its own lease ended renewed nothing the caller can use.
      return renewed && performance.now() < until ? until : undefined;
    },
    release: () => trips.release(owner),
  });
}

/** The lease options every leased locker takes, as given to its constructor. */
export interface LeaseLockerOptions {
  readonly ttlMs?: number | undefined;
  readonly pollMs?: number | undefined;
  readonly driftFactor?: number | undefined;
}

/**
 * The settings of a leased locker from its options, checked at
 * construction: the default lease (`ttlMs`, default 30 s), `pollMs` (a
 * positive integer) and `driftFactor` (in [0, 0.5), default 0.01).
 */
export function leaseSettings(
  backend: string,
  options: LeaseLockerOptions,
  defaults: { readonly pollMs: number; readonly silent: string },
): Omit<LeaseLockProtocol, 'forKey'> {
  const lease = { backend, ttlMs: options.ttlMs ?? 30_000 };
  checkLease('options.ttlMs', lease.ttlMs, lease);
  const pollMs = options.pollMs ?? defaults.pollMs;
  assertPositiveInteger('options.pollMs', pollMs);
  return {
    lease,
    pollMs,
    driftFactor: checkDriftFactor(options.driftFactor ?? 0.01),
    silent: defaults.silent,
  };
}

/**
 * The base of every leased locker: `acquire` and `tryAcquire` over
 * {@link acquireLease}. A new lease backend extends it, passes its settings
 * ({@link leaseSettings}) and supplies its round trips for a key; it must
 * then pass the shared lock contract suite (`test/locks/contract.ts`).
 *
 * @example
 * ```ts
 * class MyLeaseLock extends LeaseLocker {
 *   constructor(options: MyOptions) {
 *     super(leaseSettings('MyLeaseLock', options, { pollMs: 50, silent: 'my server did not answer in time' }));
 *   }
 *   protected roundTrips(key: string): LeaseRoundTrips { return { tryGrant, renew, release, waitForRelease }; }
 * }
 * ```
 */
export abstract class LeaseLocker extends TryOnceLocker {
  readonly #protocol: LeaseLockProtocol;

  protected constructor(settings: Omit<LeaseLockProtocol, 'forKey'>) {
    super();
    this.#protocol = { ...settings, forKey: (key) => this.roundTrips(key) };
  }

  /** The backend's round trips on `key`, once per acquire. */
  protected abstract roundTrips(key: string): LeaseRoundTrips;

  /**
   * Wait up to `waitMs` for the lock on `key`.
   *
   * @example
   * ```ts
   * await using lock = await locks.acquire('nightly-report', { ttlMs: 60_000, autoExtend: true });
   * ```
   */
  acquire(key: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return acquireLease(this.#protocol, key, options);
  }
}
