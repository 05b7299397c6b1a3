/**
 * `raceguard/delay`: named windows in service code that tests widen.
 * `delayPoint(name)` is a no-op in production; in test mode (an explicit
 * option or `RACEGUARD_DELAYS`, never by default) it pauses for the delay a
 * test or `raceguard run --delay point=ms` chose, per request through the
 * `x-raceguard-delay` header that only test mode honours.
 *
 * @packageDocumentation
 */
export {
  delayPoint,
  configureDelays,
  resetDelays,
  delaysEnabled,
  withRequestDelays,
  reachedDelayPoints,
  DELAY_REACHED_HEADER,
  parseDelays,
  formatDelays,
  DELAY_HEADER,
  DELAY_ENV,
  type DelayOptions,
} from './delay-point.js';
