import { RaceguardError } from '../core/errors.js';

/**
 * An ordered consumer was closed: the delivery was not taken (the adapter
 * gives it back to the broker).
 */
export class ConsumerClosedError extends RaceguardError {
  constructor() {
    super('RACEGUARD_CONSUMER_CLOSED', 'the ordered consumer is closed');
  }
}

/**
 * A key's sequence has a hole that stayed open longer than `gapTimeoutMs`:
 * the key is parked (nothing of it is applied, nothing is skipped) until
 * {@link OrderedConsumer.resume} is called.
 */
export class SequenceGapError extends RaceguardError {
  /** The key whose sequence has the hole. */
  readonly key: string;
  /** The sequence the consumer waits for. */
  readonly expected: number;
  /** The sequences it holds beyond the hole. */
  readonly buffered: readonly number[];

  constructor(key: string, expected: number, buffered: readonly number[], waitedMs: number) {
    super(
      'RACEGUARD_SEQUENCE_GAP',
      `key ${JSON.stringify(key)}: message ${expected} missing for ${Math.round(waitedMs)} ms while ${buffered.length} later one(s) wait (${buffered.slice(0, 5).join(', ')}${buffered.length > 5 ? ', …' : ''}); the key is parked`,
    );
    this.key = key;
    this.expected = expected;
    this.buffered = buffered;
  }
}
