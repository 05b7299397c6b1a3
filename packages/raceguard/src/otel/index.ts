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
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { metrics, trace, type Attributes, type MeterProvider } from '@opentelemetry/api';
import {
  RACEGUARD_CHANNELS,
  type CacheEventMessage,
  type IdempotencyEventMessage,
  type MessageEventMessage,
  type ReplicaEventMessage,
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

/** Upper bounds of the aggregated duration buckets, in seconds. */
export const AGGREGATE_BUCKETS: readonly number[] = [
  0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10,
];

/** A running instrumentation; `close()` (or `using`) unsubscribes. */
export interface RaceguardTelemetry extends Disposable {
  close(): void;
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
  if (options.aggregate === true) return aggregated(meter, keyLabel);
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
  const lost = meter.createCounter('raceguard.lock.lost', {
    unit: '{lock}',
    description:
      'Held locks lost (lease ran out or could not be renewed, session ended, event loop stalled)',
  });
  const idempotency = meter.createCounter('raceguard.idempotency.requests', {
    unit: '{request}',
    description: 'Idempotent requests by how they were served',
  });
  const cacheEvents = meter.createCounter('raceguard.cache.events', {
    unit: '{event}',
    description: 'LeaseCache hits, misses, fills, refused stale fills, waits and Redis failures',
  });
  const cacheTimes = meter.createHistogram('raceguard.cache.duration', {
    unit: 's',
    description:
      "LeaseCache loader time (fill), and how long a caller waited for another's fill before giving up (wait)",
  });
  const messages = meter.createCounter('raceguard.messages', {
    unit: '{message}',
    description:
      'What the ordered consumer did with each message: applied, duplicate, buffered, retry, dead-letter, gap, requeued',
  });
  const replicaReads = meter.createCounter('raceguard.replica.reads', {
    unit: '{read}',
    description: 'Reads of ReplicaRouter by where they went',
  });
  const addEvent = (name: string, attributes: Attributes): void => {
    if (spanEvents) trace.getActiveSpan()?.addEvent(name, attributes);
  };

  const onLock = (message: unknown): void => {
    const event = message as LockEvent;
    const key = keyLabel(event.key);
    if (event.event === 'lost') {
      const attributes = {
        'raceguard.lock.backend': event.backend,
        'raceguard.lock.key': key,
        'raceguard.lock.loss_reason': event.reason,
      };
      lost.add(1, attributes);
      addEvent('raceguard.lock.lost', attributes);
      return;
    }
    const granted = event.event === 'released';
    const attributes = {
      'raceguard.lock.backend': event.backend,
      'raceguard.lock.outcome': granted ? 'acquired' : event.event,
      'raceguard.lock.key': key,
    };
    lockWait.record(event.waitedMs / 1000, attributes);
    if (granted) {
      lockHold.record((event.heldMs ?? 0) / 1000, {
        'raceguard.lock.backend': event.backend,
        'raceguard.lock.key': key,
      });
    }
    addEvent('raceguard.lock.wait', {
      ...attributes,
      'raceguard.lock.waited_ms': Math.round(event.waitedMs * 1000) / 1000,
      ...(granted && { 'raceguard.lock.held_ms': Math.round((event.heldMs ?? 0) * 1000) / 1000 }),
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

  const onCache = (message: unknown): void => {
    const event = message as CacheEventMessage;
    const attributes = {
      'raceguard.cache.event': event.event,
      'raceguard.cache.key': keyLabel(event.key),
      ...(event.tier !== undefined && { 'raceguard.cache.tier': event.tier }),
    };
    cacheEvents.add(1, attributes);
    if (event.ms !== undefined) cacheTimes.record(event.ms / 1000, attributes);
    if (event.event === 'fill-refused' || event.event === 'wait')
      addEvent(`raceguard.cache.${event.event}`, attributes);
  };
  const onMessage = (message: unknown): void => {
    const event = message as MessageEventMessage;
    const attributes = {
      'raceguard.message.event': event.event,
      ...(event.key !== undefined && { 'raceguard.message.key': keyLabel(event.key) }),
      ...(event.reason !== undefined && { 'raceguard.message.reason': event.reason }),
    };
    messages.add(1, attributes);
    if (event.event !== 'applied') addEvent(`raceguard.message.${event.event}`, attributes);
  };
  const onReplica = (message: unknown): void => {
    const event = message as ReplicaEventMessage;
    const attributes = {
      'raceguard.replica.source': event.source,
      ...(event.fallback !== undefined && { 'raceguard.replica.fallback': event.fallback }),
    };
    replicaReads.add(1, attributes);
    addEvent('raceguard.replica.read', attributes);
  };
  return listen({
    lock: onLock,
    retry: onRetry,
    idempotency: onIdempotency,
    cache: onCache,
    messaging: onMessage,
    replica: onReplica,
  });
}

/** Subscribe one handler per channel; the telemetry's `close()` unsubscribes them (and runs `onClose`), once. */
function listen(
  handlers: Readonly<Record<keyof typeof RACEGUARD_CHANNELS, (message: unknown) => void>>,
  onClose: () => void = () => undefined,
): RaceguardTelemetry {
  const entries = Object.entries(handlers) as [
    keyof typeof RACEGUARD_CHANNELS,
    (message: unknown) => void,
  ][];
  for (const [name, handler] of entries) subscribe(RACEGUARD_CHANNELS[name], handler);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const [name, handler] of entries) unsubscribe(RACEGUARD_CHANNELS[name], handler);
    onClose();
  };
  return { close, [Symbol.dispose]: close };
}

/** One series of an aggregated duration: its attributes, count, sum and bucket counts. */
interface DurationSeries {
  readonly attributes: Attributes;
  count: number;
  sum: number;
  readonly buckets: number[];
}

/** The aggregated mode of {@link instrumentRaceguard}. */
function aggregated(
  meter: ReturnType<MeterProvider['getMeter']>,
  keyLabel: (key: string) => string,
): RaceguardTelemetry {
  const waits = new Map<string, DurationSeries>();
  const holds = new Map<string, DurationSeries>();
  const counts = new Map<string, { name: string; attributes: Attributes; value: number }>();
  const series = (
    map: Map<string, DurationSeries>,
    id: string,
    attributes: () => Attributes,
  ): DurationSeries => {
    let found = map.get(id);
    if (found === undefined) {
      found = {
        attributes: attributes(),
        count: 0,
        sum: 0,
        buckets: AGGREGATE_BUCKETS.map(() => 0),
      };
      map.set(id, found);
    }
    return found;
  };
  const bounds = Float64Array.from(AGGREGATE_BUCKETS);
  const observe = (entry: DurationSeries, seconds: number): void => {
    entry.count += 1;
    entry.sum += seconds;
    for (let i = 0; i < bounds.length; i += 1) {
      if (seconds <= (bounds[i] as number)) {
        entry.buckets[i] = (entry.buckets[i] ?? 0) + 1;
        return;
      }
    }
  };
  const bump = (name: string, id: string, attributes: () => Attributes): void => {
    const key = `${name}\u0000${id}`;
    const found = counts.get(key);
    if (found === undefined) counts.set(key, { name, attributes: attributes(), value: 1 });
    else found.value += 1;
  };

  // The series of each raw key, so the hot path neither labels the key nor builds an id string
  // again; bounded, since keys can be unbounded (one per order): when full it starts afresh
  // (the counts live in the labelled series, which stay).
  const byKey = new Map<string, Map<string, DurationSeries>>();
  const lookup = (
    map: Map<string, DurationSeries>,
    backend: string,
    outcome: string,
    rawKey: string,
  ): DurationSeries => {
    const cacheKey = outcome === '' ? `h\u0000${backend}` : `${outcome}\u0000${backend}`;
    let perKey = byKey.get(cacheKey);
    if (perKey === undefined) {
      perKey = new Map();
      byKey.set(cacheKey, perKey);
    }
    let found = perKey.get(rawKey);
    if (found === undefined) {
      const key = keyLabel(rawKey);
      found = series(map, `${backend}\u0000${outcome}\u0000${key}`, () =>
        outcome === ''
          ? { 'raceguard.lock.backend': backend, 'raceguard.lock.key': key }
          : {
              'raceguard.lock.backend': backend,
              'raceguard.lock.outcome': outcome,
              'raceguard.lock.key': key,
            },
      );
      if (perKey.size >= 10_000) perKey.clear();
      perKey.set(rawKey, found);
    }
    return found;
  };
  const onLock = (message: unknown): void => {
    const event = message as LockEvent;
    if (event.event === 'lost') {
      const key = keyLabel(event.key);
      bump('raceguard.lock.lost', `${event.backend}\u0000${key}\u0000${event.reason}`, () => ({
        'raceguard.lock.backend': event.backend,
        'raceguard.lock.key': key,
        'raceguard.lock.loss_reason': event.reason,
      }));
      return;
    }
    const granted = event.event === 'released';
    observe(
      lookup(waits, event.backend, granted ? 'acquired' : event.event, event.key),
      event.waitedMs / 1000,
    );
    if (granted) observe(lookup(holds, event.backend, '', event.key), (event.heldMs ?? 0) / 1000);
  };
  const onRetry = (message: unknown): void => {
    const event = message as RetryEventMessage;
    bump(
      event.event === 'retry' ? 'raceguard.retries' : 'raceguard.retries.exhausted',
      `${event.operation}\u0000${event.code}`,
      () => ({ 'raceguard.operation': event.operation, 'raceguard.error.code': event.code }),
    );
  };
  const onIdempotency = (message: unknown): void => {
    const { event } = message as IdempotencyEventMessage;
    bump('raceguard.idempotency.requests', event, () => ({
      'raceguard.idempotency.outcome': event,
    }));
  };

  const durations = (name: string, what: string) => ({
    count: meter.createObservableCounter(`${name}.count`, {
      unit: '{lock}',
      description: `${what}: how many`,
    }),
    sum: meter.createObservableCounter(`${name}.sum`, {
      unit: 's',
      description: `${what}: total time`,
    }),
    bucket: meter.createObservableCounter(`${name}.bucket`, {
      unit: '{lock}',
      description: `${what}: how many took at most le seconds`,
    }),
  });
  const wait = durations('raceguard.lock.wait.duration', 'Lock waits');
  const hold = durations('raceguard.lock.hold.duration', 'Lock holds');
  const counters = {
    'raceguard.retries': meter.createObservableCounter('raceguard.retries', { unit: '{retry}' }),
    'raceguard.retries.exhausted': meter.createObservableCounter('raceguard.retries.exhausted', {
      unit: '{operation}',
    }),
    'raceguard.lock.lost': meter.createObservableCounter('raceguard.lock.lost', { unit: '{lock}' }),
    'raceguard.cache.events': meter.createObservableCounter('raceguard.cache.events', {
      unit: '{event}',
    }),
    'raceguard.messages': meter.createObservableCounter('raceguard.messages', {
      unit: '{message}',
    }),
    'raceguard.replica.reads': meter.createObservableCounter('raceguard.replica.reads', {
      unit: '{read}',
    }),
    'raceguard.idempotency.requests': meter.createObservableCounter(
      'raceguard.idempotency.requests',
      { unit: '{request}' },
    ),
  } as const;
  const observables = [
    wait.count,
    wait.sum,
    wait.bucket,
    hold.count,
    hold.sum,
    hold.bucket,
    ...Object.values(counters),
  ];
  const collect = (
    result: Parameters<Parameters<typeof meter.addBatchObservableCallback>[0]>[0],
  ): void => {
    for (const [map, instruments] of [
      [waits, wait],
      [holds, hold],
    ] as const) {
      for (const entry of map.values()) {
        result.observe(instruments.count, entry.count, entry.attributes);
        result.observe(instruments.sum, entry.sum, entry.attributes);
        let cumulative = 0;
        AGGREGATE_BUCKETS.forEach((bound, i) => {
          cumulative += entry.buckets[i] ?? 0;
          result.observe(instruments.bucket, cumulative, { ...entry.attributes, le: bound });
        });
        result.observe(instruments.bucket, entry.count, { ...entry.attributes, le: 'inf' });
      }
    }
    for (const { name, attributes, value } of counts.values()) {
      result.observe(counters[name as keyof typeof counters], value, attributes);
    }
  };
  meter.addBatchObservableCallback(collect, observables);

  const onCache = (message: unknown): void => {
    const event = message as CacheEventMessage;
    const key = keyLabel(event.key);
    bump('raceguard.cache.events', `${event.event}\u0000${key}\u0000${event.tier ?? ''}`, () => ({
      'raceguard.cache.event': event.event,
      'raceguard.cache.key': key,
      ...(event.tier !== undefined && { 'raceguard.cache.tier': event.tier }),
    }));
  };
  const onMessage = (message: unknown): void => {
    const event = message as MessageEventMessage;
    const key = event.key === undefined ? undefined : keyLabel(event.key);
    bump(
      'raceguard.messages',
      `${event.event}\u0000${key ?? ''}\u0000${event.reason ?? ''}`,
      () => ({
        'raceguard.message.event': event.event,
        ...(key !== undefined && { 'raceguard.message.key': key }),
        ...(event.reason !== undefined && { 'raceguard.message.reason': event.reason }),
      }),
    );
  };
  const onReplica = (message: unknown): void => {
    const event = message as ReplicaEventMessage;
    bump('raceguard.replica.reads', `${event.source}\u0000${event.fallback ?? ''}`, () => ({
      'raceguard.replica.source': event.source,
      ...(event.fallback !== undefined && { 'raceguard.replica.fallback': event.fallback }),
    }));
  };
  return listen(
    {
      lock: onLock,
      retry: onRetry,
      idempotency: onIdempotency,
      cache: onCache,
      messaging: onMessage,
      replica: onReplica,
    },
    () => meter.removeBatchObservableCallback(collect, observables),
  );
}
