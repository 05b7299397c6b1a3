import { RaceguardError } from '../core/errors.js';

/** A timestamp or vector clock in a header or a message could not be read. */
export class ClockFormatError extends RaceguardError {
  readonly input: string;
  constructor(what: string, input: string) {
    super(
      'RACEGUARD_CLOCK_FORMAT',
      `${what}: cannot read ${JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input)}`,
    );
    this.input = input;
  }
}

/**
 * A remote timestamp is further ahead of this machine's clock than
 * `maxOffsetMs`: taking it would drag the local clock forward by the other
 * machine's skew. The local clock is unchanged.
 */
export class ClockOffsetError extends RaceguardError {
  readonly remoteWallMs: number;
  readonly localWallMs: number;
  readonly maxOffsetMs: number;
  constructor(remoteWallMs: number, localWallMs: number, maxOffsetMs: number) {
    super(
      'RACEGUARD_CLOCK_OFFSET',
      `a remote timestamp is ${remoteWallMs - localWallMs} ms ahead of this clock (at most ${maxOffsetMs} ms allowed)`,
    );
    this.remoteWallMs = remoteWallMs;
    this.localWallMs = localWallMs;
    this.maxOffsetMs = maxOffsetMs;
  }
}

/**
 * A counter would pass its maximum (an HLC's logical part, a Lamport or
 * vector entry): refused rather than wrapped. The clock is unchanged.
 */
export class ClockOverflowError extends RaceguardError {
  constructor(what: string, max: number) {
    super('RACEGUARD_CLOCK_OVERFLOW', `${what} would pass its maximum ${max}`);
  }
}

/**
 * The clock would issue a timestamp beyond the high-water mark it has made
 * durable, and could not persist a new one: after a crash it might then
 * issue a lower timestamp than one already handed out. The cause is the
 * store's failure.
 */
export class ClockHighWaterError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_CLOCK_HIGH_WATER', message, cause === undefined ? {} : { cause });
  }
}
