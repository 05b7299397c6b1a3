/**
 * `raceguard/clock`: logical clocks for ordering across machines whose
 * wall clocks drift: Lamport and vector clocks, and a hybrid logical clock
 * that stays close to physical time, refuses remote timestamps too far
 * ahead, and never goes backwards across a restart. No dependencies.
 *
 * @packageDocumentation
 */
export {
  HybridLogicalClock,
  compareHlc,
  formatHlc,
  parseHlc,
  hlcToBytes,
  hlcFromBytes,
  MAX_LOGICAL,
  MAX_WALL,
  type HlcTimestamp,
  type HybridLogicalClockOptions,
  type HighWaterStore,
} from './hlc.js';
export { LamportClock } from './lamport.js';
export { VectorClock, type VectorOrder } from './vector.js';
export { fileHighWater } from './high-water.js';
export { HLC_HEADER, stampHeaders, receiveHeaders } from './headers.js';
export {
  ClockFormatError,
  ClockOffsetError,
  ClockOverflowError,
  ClockHighWaterError,
} from './errors.js';
