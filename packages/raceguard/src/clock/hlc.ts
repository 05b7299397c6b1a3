/**
 * A hybrid logical clock after Kulkarni, Demirbas et al., "Logical Physical
 * Clocks" (OPODIS 2014): a timestamp is (wall, logical), where wall is the
 * largest physical time (ms) this clock has heard of and logical counts
 * events within it. Timestamps respect happened-before like a Lamport clock
 * and stay within the clocks' offset of physical time, so they can replace
 * wall-clock timestamps where machines' clocks drift (last-writer-wins,
 * ordering by time).
 */
import { InvalidArgumentError } from '../core/errors.js';
import {
  assertFunction,
  assertKnownOptions,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import {
  ClockFormatError,
  ClockHighWaterError,
  ClockOffsetError,
  ClockOverflowError,
} from './errors.js';

/** An HLC timestamp. Compare with {@link compareHlc}; send with {@link formatHlc} or {@link hlcToBytes}. */
export interface HlcTimestamp {
  /** Physical part: milliseconds since the epoch (at most 2^48 - 1). */
  readonly wall: number;
  /** Logical part: events within `wall` (at most 65,535). */
  readonly logical: number;
}

/** Largest logical part: the binary form packs it in 16 bits. */
export const MAX_LOGICAL = 0xffff;
/** Largest wall part: the binary form packs it in 48 bits (year 10889). */
export const MAX_WALL = 2 ** 48 - 1;

/**
 * Where a clock keeps its high-water mark: a wall time it promises never to
 * reach without saving a higher one first, so that a restarted process
 * never issues a timestamp below one it issued before, whatever its
 * physical clock says. `save` must be durable when it returns (see
 * `fileHighWater`).
 */
export interface HighWaterStore {
  load(): number | undefined;
  save(wallMs: number): void;
}

/** Options of {@link HybridLogicalClock}. */
export interface HybridLogicalClockOptions {
  /**
   * Largest amount (ms) a remote timestamp may be ahead of this machine's
   * physical clock; beyond it `receive` throws `ClockOffsetError` and the
   * clock is unchanged. CockroachDB's default is 500 ms. @default 500
   */
  readonly maxOffsetMs?: number;
  /** The physical clock, in ms since the epoch (inject one in tests). @default Date.now */
  readonly now?: () => number;
  /** Persist a high-water mark (see {@link HighWaterStore}). @default none */
  readonly highWater?: HighWaterStore;
  /**
   * How far ahead of the physical clock each saved mark is: one durable save
   * per window, and the most a restart can put the clock ahead of real time
   * (it resumes at the saved mark when the physical clock is behind it). At
   * most `maxOffsetMs`, so that peers accept a restarted clock's stamps.
   * @default half of `maxOffsetMs` (250)
   */
  readonly highWaterWindowMs?: number;
}

const OPTIONS = new Set(['maxOffsetMs', 'now', 'highWater', 'highWaterWindowMs']);

/**
 * A hybrid logical clock.
 *
 * @example
 * ```ts
 * const clock = new HybridLogicalClock({ maxOffsetMs: 500 });
 * const stamp = clock.now(); // for a local event or an outgoing message
 * clock.receive(remoteStamp); // for an incoming one: the clock moves past it
 * ```
 */
export class HybridLogicalClock {
  readonly #maxOffsetMs: number;
  readonly #now: () => number;
  readonly #highWater: HighWaterStore | undefined;
  readonly #windowMs: number;
  #wall = 0;
  #logical = 0;
  /** The saved mark: no timestamp reaches it before a higher one is saved. */
  #mark = Number.POSITIVE_INFINITY;

  constructor(options: HybridLogicalClockOptions = {}) {
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTIONS);
    this.#maxOffsetMs = options.maxOffsetMs ?? 500;
    assertPositiveInteger('options.maxOffsetMs', this.#maxOffsetMs);
    this.#now = options.now ?? Date.now;
    assertFunction('options.now', this.#now);
    this.#windowMs = options.highWaterWindowMs ?? Math.max(1, Math.floor(this.#maxOffsetMs / 2));
    assertPositiveInteger('options.highWaterWindowMs', this.#windowMs);
    if (this.#windowMs > this.#maxOffsetMs) {
      throw new InvalidArgumentError(
        'options.highWaterWindowMs',
        `at most options.maxOffsetMs (${this.#maxOffsetMs}): a restart resumes up to one window ahead of real time, and peers refuse stamps more than maxOffsetMs ahead`,
        this.#windowMs,
      );
    }
    this.#highWater = options.highWater;
    if (this.#highWater !== undefined) {
      assertPlainObject('options.highWater', this.#highWater);
      const store = this.#highWater as unknown as Record<string, unknown>;
      assertFunction('options.highWater.load', store.load);
      assertFunction('options.highWater.save', store.save);
      let saved: number | undefined;
      try {
        saved = this.#highWater.load();
      } catch (error) {
        throw new ClockHighWaterError('could not read the high-water mark', error);
      }
      if (saved !== undefined) {
        if (!Number.isSafeInteger(saved) || saved < 0 || saved > MAX_WALL) {
          throw new ClockHighWaterError(
            `the stored high-water mark ${String(saved)} is not a wall time`,
          );
        }
        // Everything issued before the restart was below the mark: never
        // issue below it. The mark was at most one window ahead of the
        // physical clock when it was saved, so a restart with a correct
        // clock resumes at most one window ahead of real time.
        this.#wall = saved;
        this.#logical = 0;
      }
      this.#mark = Number.NEGATIVE_INFINITY;
      this.#advanceMark(this.#wall);
    }
  }

  /** The last timestamp issued or received (the clock's state). */
  get last(): HlcTimestamp {
    return { wall: this.#wall, logical: this.#logical };
  }

  /** A timestamp for a local event or an outgoing message: greater than every one before. */
  now(): HlcTimestamp {
    const physical = this.#physical();
    if (physical > this.#wall) return this.#set(physical, 0);
    if (this.#logical >= MAX_LOGICAL) return this.#set(this.#nextWall(this.#wall, physical), 0);
    return this.#set(this.#wall, this.#logical + 1);
  }

  /**
   * Take in a remote timestamp (an incoming message, a request header) and
   * return a timestamp greater than it and than every local one. Throws
   * `ClockOffsetError` when `remote` is more than `maxOffsetMs` ahead of the
   * physical clock; the clock is then unchanged.
   */
  receive(remote: HlcTimestamp): HlcTimestamp {
    assertTimestamp('remote', remote);
    const physical = this.#physical();
    if (remote.wall - physical > this.#maxOffsetMs) {
      throw new ClockOffsetError(remote.wall, physical, this.#maxOffsetMs);
    }
    const wall = Math.max(this.#wall, remote.wall, physical);
    let logical: number;
    if (wall === this.#wall && wall === remote.wall) {
      logical = Math.max(this.#logical, remote.logical) + 1;
    } else if (wall === this.#wall) {
      logical = this.#logical + 1;
    } else if (wall === remote.wall) {
      logical = remote.logical + 1;
    } else {
      logical = 0;
    }
    if (logical > MAX_LOGICAL) return this.#set(this.#nextWall(wall, physical), 0);
    return this.#set(wall, logical);
  }

  #physical(): number {
    const physical = this.#now();
    if (!Number.isFinite(physical) || physical < 0 || physical > MAX_WALL) {
      throw new InvalidArgumentError('options.now()', 'milliseconds since the epoch', physical);
    }
    return Math.floor(physical);
  }

  /**
   * The wall part after the last one when its logical part is spent: one
   * millisecond on, as long as that stays within `maxOffsetMs` of the
   * physical clock (peers accept it); beyond, `ClockOverflowError`.
   */
  #nextWall(wall: number, physical: number): number {
    if (wall + 1 - physical > this.#maxOffsetMs) {
      throw new ClockOverflowError('the logical counter', MAX_LOGICAL);
    }
    return wall + 1;
  }

  #set(wall: number, logical: number): HlcTimestamp {
    if (wall >= this.#mark) this.#advanceMark(wall);
    this.#wall = wall;
    this.#logical = logical;
    return { wall, logical };
  }

  /**
   * Save a mark past `wall` before any timestamp reaches the old one: one
   * window past the physical clock (not past `wall`, which may itself be
   * ahead after a restart: marks taken from it would climb a window further
   * ahead of real time with every quick restart).
   */
  #advanceMark(wall: number): void {
    const store = this.#highWater;
    if (store === undefined) return;
    const mark = Math.min(Math.max(wall + 1, this.#physical() + this.#windowMs), MAX_WALL);
    try {
      store.save(mark);
    } catch (error) {
      throw new ClockHighWaterError(
        `could not save the high-water mark ${mark}: no timestamp at or beyond ${this.#mark} is issued until one is saved`,
        error,
      );
    }
    this.#mark = mark;
  }
}

function assertTimestamp(name: string, value: HlcTimestamp): void {
  assertPlainObject(name, value);
  if (!Number.isSafeInteger(value.wall) || value.wall < 0 || value.wall > MAX_WALL) {
    throw new InvalidArgumentError(`${name}.wall`, `an integer from 0 to ${MAX_WALL}`, value.wall);
  }
  if (!Number.isSafeInteger(value.logical) || value.logical < 0 || value.logical > MAX_LOGICAL) {
    throw new InvalidArgumentError(
      `${name}.logical`,
      `an integer from 0 to ${MAX_LOGICAL}`,
      value.logical,
    );
  }
}

/**
 * Order two timestamps: negative if `a` is earlier, positive if later, 0 if
 * equal. (Equal timestamps from two nodes are concurrent: break ties by node
 * id where a total order is needed.)
 *
 * @example
 * ```ts
 * const newest = [a, b, c].sort(compareHlc).at(-1);
 * ```
 */
export function compareHlc(a: HlcTimestamp, b: HlcTimestamp): number {
  return a.wall === b.wall ? a.logical - b.logical : a.wall - b.wall;
}

/**
 * A timestamp as 16 lowercase hex digits (12 for wall, 4 for logical): the
 * strings sort as the timestamps do.
 *
 * @example
 * ```ts
 * response.setHeader('x-hlc', formatHlc(clock.now())); // '019a8e4c2b10000f'
 * ```
 */
export function formatHlc(timestamp: HlcTimestamp): string {
  assertTimestamp('timestamp', timestamp);
  return (
    timestamp.wall.toString(16).padStart(12, '0') + timestamp.logical.toString(16).padStart(4, '0')
  );
}

const HLC_TEXT = /^[0-9a-f]{16}$/;

/**
 * Read {@link formatHlc}'s form; a `ClockFormatError` for anything else.
 *
 * @example
 * ```ts
 * const remote = parseHlc(request.headers['x-hlc']);
 * ```
 */
export function parseHlc(text: string): HlcTimestamp {
  if (typeof text !== 'string' || !HLC_TEXT.test(text)) {
    throw new ClockFormatError('an HLC timestamp (16 hex digits)', String(text));
  }
  return {
    wall: Number.parseInt(text.slice(0, 12), 16),
    logical: Number.parseInt(text.slice(12), 16),
  };
}

/**
 * A timestamp as 8 bytes, big-endian (48-bit wall, 16-bit logical): the
 * bytes compare (`Buffer.compare`, an index on a `bytea` column) as the
 * timestamps do.
 *
 * @example
 * ```ts
 * await db.query('UPDATE registers SET value = $1, stamp = $2 WHERE ...', [value, hlcToBytes(stamp)]);
 * ```
 */
export function hlcToBytes(timestamp: HlcTimestamp): Uint8Array {
  assertTimestamp('timestamp', timestamp);
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, Math.floor(timestamp.wall / 2 ** 32));
  view.setUint32(2, timestamp.wall % 2 ** 32);
  view.setUint16(6, timestamp.logical);
  return bytes;
}

/**
 * Read {@link hlcToBytes}'s form.
 *
 * @example
 * ```ts
 * const stamp = hlcFromBytes(row.stamp);
 * ```
 */
export function hlcFromBytes(bytes: Uint8Array): HlcTimestamp {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 8) {
    throw new ClockFormatError('an HLC timestamp (8 bytes)', String(bytes));
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  return {
    wall: view.getUint16(0) * 2 ** 32 + view.getUint32(2),
    logical: view.getUint16(6),
  };
}
