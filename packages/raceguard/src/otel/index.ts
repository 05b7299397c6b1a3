/**
 * `raceguard/otel`: raceguard's defences as OpenTelemetry metrics and span
 * events (optional peer `@opentelemetry/api`). It subscribes to the
 * `raceguard:*` diagnostics channels the core publishes on and records:
 *
 * | instrument | type | unit | attributes |
 * | --- | --- | --- | --- |
 * | `raceguard.lock.wait.duration` | histogram | s | `raceguard.lock.backend`, `raceguard.lock.outcome` (acquired, timeout, aborted, failed), `raceguard.lock.key` |
 * | `raceguard.lock.hold.duration` | histogram | s | `raceguard.lock.backend`, `raceguard.lock.key` |
 * | `raceguard.retries` | counter | {retry} | `raceguard.operation` (transaction, optimistic-update), `raceguard.error.code` |
 * | `raceguard.retries.exhausted` | counter | {operation} | the same |
 * | `raceguard.idempotency.requests` | counter | {request} | `raceguard.idempotency.outcome` (executed, replayed, in-flight, key-reused, store-error, unprotected) |
 *
 * and the same facts as events on the active span (`raceguard.lock.wait`,
 * `raceguard.retry`, `raceguard.idempotency`), so a slow request shows that
 * it waited 800 ms for an `invoice` lock. Lock keys may hold personal data:
 * only `keyLabel(key)` leaves the process (default: the key's prefix before
 * the first `:`, so `invoice:42` is exported as `invoice`).
 *
 * @packageDocumentation
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { metrics, trace, type Attributes, type MeterProvider } from '@opentelemetry/api';
import {
  RACEGUARD_CHANNELS,
  type IdempotencyEventMessage,
  type LockEvent,
  type RetryEventMessage,
} from '../core/events.js';
import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';

export { RACEGUARD_CHANNELS };

/** Options of {@link instrumentRaceguard}. */
export interface RaceguardTelemetryOptions {
  /** Where the instruments come from. @default the global meter provider (`metrics.getMeterProvider()`) */
  readonly meterProvider?: MeterProvider;
  /** Add span events to the active span. @default true */
  readonly spanEvents?: boolean;
  /** What of a lock key is exported. @default the key's prefix before the first `:` (the whole key when it has none) */
  readonly keyLabel?: (key: string) => string;
}

/** A running instrumentation; `close()` (or `using`) unsubscribes. */
export interface RaceguardTelemetry extends Disposable {
  close(): void;
}

/** The default key label: `invoice:42` → `invoice`. */
export function keyPrefix(key: string): string {
  const colon = key.indexOf(':');
  return colon < 0 ? key : key.slice(0, colon);
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
  assertKnownOptions('options', options, new Set(['meterProvider', 'spanEvents', 'keyLabel']));
  const keyLabel = options.keyLabel ?? keyPrefix;
  if (typeof keyLabel !== 'function')
    throw new InvalidArgumentError('options.keyLabel', 'a function', keyLabel);
  const spanEvents = options.spanEvents ?? true;
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter('raceguard');
  const lockWait = meter.createHistogram('raceguard.lock.wait.duration', {
    unit: 's',
    description: 'Time from asking for a lock to its grant or refusal',
  });
  const lockHold = meter.createHistogram('raceguard.lock.hold.duration', {
    unit: 's',
    description: 'Time a lock was held',
  });
  const retries = meter.createCounter('raceguard.retries', {
    unit: '{retry}',
    description: 'Transactions and optimistic updates run again after a conflict',
  });
  const exhausted = meter.createCounter('raceguard.retries.exhausted', {
    unit: '{operation}',
    description: 'Transactions and optimistic updates that gave up after their last attempt',
  });
  const idempotency = meter.createCounter('raceguard.idempotency.requests', {
    unit: '{request}',
    description: 'Idempotent requests by how they were served',
  });
  const addEvent = (name: string, attributes: Attributes): void => {
    if (spanEvents) trace.getActiveSpan()?.addEvent(name, attributes);
  };

  const onLock = (message: unknown): void => {
    const event = message as LockEvent;
    const key = keyLabel(event.key);
    if (event.event === 'released') {
      lockHold.record((event.heldMs ?? 0) / 1000, {
        'raceguard.lock.backend': event.backend,
        'raceguard.lock.key': key,
      });
      return;
    }
    const attributes = {
      'raceguard.lock.backend': event.backend,
      'raceguard.lock.outcome': event.event,
      'raceguard.lock.key': key,
    };
    lockWait.record((event.waitedMs ?? 0) / 1000, attributes);
    addEvent('raceguard.lock.wait', {
      ...attributes,
      'raceguard.lock.waited_ms': Math.round((event.waitedMs ?? 0) * 1000) / 1000,
    });
  };
  const onRetry = (message: unknown): void => {
    const event = message as RetryEventMessage;
    const attributes = {
      'raceguard.operation': event.operation,
      'raceguard.error.code': event.code,
    };
    if (event.event === 'retry') retries.add(1, attributes);
    else exhausted.add(1, attributes);
    addEvent(event.event === 'retry' ? 'raceguard.retry' : 'raceguard.retry.exhausted', {
      ...attributes,
      'raceguard.attempt': event.attempt,
    });
  };
  const onIdempotency = (message: unknown): void => {
    const { event } = message as IdempotencyEventMessage;
    idempotency.add(1, { 'raceguard.idempotency.outcome': event });
    addEvent('raceguard.idempotency', { 'raceguard.idempotency.outcome': event });
  };

  subscribe(RACEGUARD_CHANNELS.lock, onLock);
  subscribe(RACEGUARD_CHANNELS.retry, onRetry);
  subscribe(RACEGUARD_CHANNELS.idempotency, onIdempotency);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    unsubscribe(RACEGUARD_CHANNELS.lock, onLock);
    unsubscribe(RACEGUARD_CHANNELS.retry, onRetry);
    unsubscribe(RACEGUARD_CHANNELS.idempotency, onIdempotency);
  };
  return { close, [Symbol.dispose]: close };
}
