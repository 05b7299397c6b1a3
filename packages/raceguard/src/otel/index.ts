/**
 * `raceguard/otel`: raceguard's defences as OpenTelemetry metrics and span
 * events (optional peer `@opentelemetry/api`). It subscribes to the
 * `raceguard:*` diagnostics channels the core publishes on and records:
 *
 * | instrument | type | unit | attributes |
 * | --- | --- | --- | --- |
 * | `raceguard.lock.wait.duration` | histogram | s | `raceguard.lock.backend`, `raceguard.lock.outcome` (acquired, timeout, aborted, failed), `raceguard.lock.key` |
 * | `raceguard.lock.hold.duration` | histogram | s | `raceguard.lock.backend`, `raceguard.lock.key` |
 * | `raceguard.lock.lost` | counter | {lock} | `raceguard.lock.backend`, `raceguard.lock.key`, `raceguard.lock.loss_reason` |
 * | `raceguard.cache.events` | counter | {event} | `raceguard.cache.event` (hit, miss, stale-hit, fill, fill-refused, wait, backend-error), `raceguard.cache.key`, `raceguard.cache.tier` |
 * | `raceguard.cache.duration` | histogram | s | the same (fills: loader time; waits: how long a caller waited for another's fill before giving up) |
 * | `raceguard.messages` | counter | {message} | `raceguard.message.event` (applied, duplicate, buffered, retry, dead-letter, gap, resumed, requeued, error), `raceguard.message.key`, `raceguard.message.reason` |
 * | `raceguard.replica.reads` | counter | {read} | `raceguard.replica.source` (primary, replica), `raceguard.replica.fallback` |
 * | `raceguard.retries` | counter | {retry} | `raceguard.operation` (transaction, optimistic-update), `raceguard.error.code` |
 * | `raceguard.retries.exhausted` | counter | {operation} | the same |
 * | `raceguard.idempotency.requests` | counter | {request} | `raceguard.idempotency.outcome` (executed, replayed, in-flight, key-reused, store-error, unprotected) |
 *
 * and the same facts as events on the active span (`raceguard.lock.wait`,
 * `raceguard.retry`, `raceguard.idempotency`), so a slow request shows that
 * it waited 800 ms for an `invoice` lock. Lock keys may hold personal data:
 * only `keyLabel(key)` leaves the process (default: the key's prefix before
 * the first `:`, so `invoice:42` is exported as `invoice`; a key without
 * one as `(no prefix)`).
 *
 * @packageDocumentation
 */
import { metrics, type MeterProvider } from '@opentelemetry/api';
import { RACEGUARD_CHANNELS } from '../core/events.js';
import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { AGGREGATE_BUCKETS, aggregatedTelemetry } from './aggregate.js';
import type { RaceguardTelemetry } from './listen.js';
import { perEventTelemetry } from './per-event.js';

export { RACEGUARD_CHANNELS, AGGREGATE_BUCKETS };
export type { RaceguardTelemetry };

/** Options of {@link instrumentRaceguard}. */
export interface RaceguardTelemetryOptions {
  /** Where the instruments come from. @default the global meter provider (`metrics.getMeterProvider()`) */
  readonly meterProvider?: MeterProvider;
  /** Add span events to the active span. @default true */
  readonly spanEvents?: boolean;
  /** What of a lock key is exported. @default {@link keyPrefix}: the key's prefix before the first `:`, `(no prefix)` when it has none */
  readonly keyLabel?: (key: string) => string;
  /**
   * Keep counts, sums and duration buckets in local arrays on the hot path
   * and hand them to the SDK only when it collects (observable
   * instruments), instead of one SDK call per event: for the fastest paths
   * (an in-process lock costs less than one histogram record). Durations
   * are then exported as `<name>.count`, `<name>.sum` (s) and
   * `<name>.bucket` (cumulative, attribute `le` in seconds, Prometheus
   * style); counters keep their names. No span events in this mode.
   * @default false
   */
  readonly aggregate?: boolean;
}

/** The label of a key with no exportable prefix. */
export const NO_KEY_PREFIX = '(no prefix)';

/**
 * The default key label: `invoice:42` → `invoice`. Only a prefix before the
 * first `:` that looks like a name (letters, digits, `_`, `-`, `.`; at most
 * 64) leaves the process; any other key (`ada@example.com`,
 * `ada@example.com:1`, a key with no `:`) is labelled
 * {@link NO_KEY_PREFIX}, whatever it holds.
 *
 * @example
 * ```ts
 * instrumentRaceguard({ keyLabel: (key) => (key.startsWith('vip:') ? 'vip' : keyPrefix(key)) });
 * ```
 */
export function keyPrefix(key: string): string {
  const colon = key.indexOf(':');
  if (colon <= 0) return NO_KEY_PREFIX;
  const prefix = key.slice(0, colon);
  return /^[A-Za-z0-9_.-]{1,64}$/.test(prefix) ? prefix : NO_KEY_PREFIX;
}

/**
 * Record raceguard's events as OpenTelemetry metrics and span events until
 * `close()`.
 *
 * @example
 * ```ts
 * import { instrumentRaceguard } from 'raceguard/otel';
 * const telemetry = instrumentRaceguard({ keyLabel: (key) => key.split(':')[0] ?? key });
 * // ... on shutdown:
 * telemetry.close();
 * ```
 */
export function instrumentRaceguard(options: RaceguardTelemetryOptions = {}): RaceguardTelemetry {
  assertPlainObject('options', options);
  assertKnownOptions(
    'options',
    options,
    new Set(['meterProvider', 'spanEvents', 'keyLabel', 'aggregate']),
  );
  const keyLabel = options.keyLabel ?? keyPrefix;
  if (typeof keyLabel !== 'function')
    throw new InvalidArgumentError('options.keyLabel', 'a function', keyLabel);
  const spanEvents = options.spanEvents ?? true;
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter('raceguard');
  if (options.aggregate === true) return aggregatedTelemetry(meter, keyLabel);
  return perEventTelemetry(meter, keyLabel, spanEvents);
}
