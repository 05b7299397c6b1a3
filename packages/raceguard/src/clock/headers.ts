/**
 * HLC timestamps in HTTP and message headers: one header, 16 hex digits
 * ({@link formatHlc}). The reader side moves the clock past the sender's
 * timestamp; a malformed value or one too far ahead is a typed error and
 * leaves the clock unchanged.
 */
import { assertPlainObject } from '../core/validate.js';
import { ClockFormatError } from './errors.js';
import { formatHlc, parseHlc, type HlcTimestamp, type HybridLogicalClock } from './hlc.js';

/** The header raceguard reads and writes by default. */
export const HLC_HEADER = 'x-hlc';

/**
 * Stamp outgoing message headers with `clock.now()` (returns the stamp).
 *
 * @example
 * ```ts
 * const headers: Record<string, string> = {};
 * stampHeaders(clock, headers);
 * await publisher.publish({ ...message, headers });
 * ```
 */
export function stampHeaders(
  clock: HybridLogicalClock,
  headers: Record<string, string>,
  header: string = HLC_HEADER,
): HlcTimestamp {
  assertPlainObject('headers', headers);
  const stamp = clock.now();
  headers[header] = formatHlc(stamp);
  return stamp;
}

/**
 * Take in the timestamp of incoming headers: the clock moves past it and
 * the stamp of the receipt is returned; `undefined` when the header is
 * absent. `ClockFormatError` for a malformed value, `ClockOffsetError` for
 * one too far ahead: the clock is unchanged.
 *
 * @example
 * ```ts
 * const received = receiveHeaders(clock, message.headers);
 * ```
 */
export function receiveHeaders(
  clock: HybridLogicalClock,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  header: string = HLC_HEADER,
): HlcTimestamp | undefined {
  assertPlainObject('headers', headers);
  const value = headers[header];
  if (value === undefined) return undefined;
  if (typeof value !== 'string')
    throw new ClockFormatError(`the ${header} header`, value.join(','));
  return clock.receive(parseHlc(value));
}
