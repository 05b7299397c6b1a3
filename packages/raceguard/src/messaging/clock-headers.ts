/**
 * Hybrid logical clock stamps on messages, for the broker adapters: the
 * publisher stamps (`x-hlc`), the consumer takes the stamp in before the
 * handler runs.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { HLC_HEADER, receiveHeaders } from '../clock/headers.js';
import { HybridLogicalClock, formatHlc } from '../clock/hlc.js';
import type { Message } from './message.js';

/** `clock` if it is a HybridLogicalClock (or undefined); a typed error otherwise. */
export function checkClock(
  name: string,
  clock: HybridLogicalClock | undefined,
): HybridLogicalClock | undefined {
  if (clock !== undefined && !(clock instanceof HybridLogicalClock)) {
    throw new InvalidArgumentError(name, 'a HybridLogicalClock', clock);
  }
  return clock;
}

/** `message` with an `x-hlc` stamp from `clock`, unless it has one (or there is no clock). */
export function stamped(message: Message, clock: HybridLogicalClock | undefined): Message {
  if (clock === undefined || message.headers[HLC_HEADER] !== undefined) return message;
  return { ...message, headers: { ...message.headers, [HLC_HEADER]: formatHlc(clock.now()) } };
}

/** Take in `message`'s stamp (throws `ClockFormatError` / `ClockOffsetError`, clock unchanged). */
export function received(message: Message, clock: HybridLogicalClock | undefined): Message {
  if (clock !== undefined) receiveHeaders(clock, message.headers);
  return message;
}
