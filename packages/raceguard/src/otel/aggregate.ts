/**
 * The aggregated mode of `instrumentRaceguard`: counts, sums and duration
 * buckets kept in local tables on the hot path, handed to the SDK only when
 * it collects (observable instruments), instead of one SDK call per event.
 */
import type { Attributes, BatchObservableResult, Meter } from '@opentelemetry/api';
import type {
  CacheEventMessage,
  IdempotencyEventMessage,
  LockEvent,
  MessageEventMessage,
  ReplicaEventMessage,
  RetryEventMessage,
} from '../core/events.js';
import { COUNTERS, type CounterName } from './instruments.js';
import { listen, type ChannelHandlers, type RaceguardTelemetry } from './listen.js';

/** Upper bounds of the aggregated duration buckets, in seconds. */
export const AGGREGATE_BUCKETS: readonly number[] = [
  0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10,
];

const BOUNDS = Float64Array.from(AGGREGATE_BUCKETS);

/** One series of an aggregated duration: its attributes, count, sum and bucket counts. */
interface DurationSeries {
  readonly attributes: Attributes;
  count: number;
  sum: number;
  readonly buckets: number[];
}

/** Record one duration in its series. */
function observe(entry: DurationSeries, seconds: number): void {
  entry.count += 1;
  entry.sum += seconds;
  for (let i = 0; i < BOUNDS.length; i += 1) {
    if (seconds <= (BOUNDS[i] as number)) {
      entry.buckets[i] = (entry.buckets[i] ?? 0) + 1;
      return;
    }
  }
}

/**
 * The lock durations of one kind (waits, or holds), one series per backend,
 * outcome and labelled key. The series of each raw key is remembered, so
 * the hot path neither labels the key nor builds an id string again; that
 * memory is bounded, since keys can be unbounded (one per order): when full
 * it starts afresh (the counts live in the labelled series, which stay).
 */
class LockDurations {
  readonly series = new Map<string, DurationSeries>();
  /** backend → outcome → raw key → series. */
  readonly #byKey = new Map<string, Map<string, Map<string, DurationSeries>>>();
  readonly #keyLabel: (key: string) => string;

  constructor(keyLabel: (key: string) => string) {
    this.#keyLabel = keyLabel;
  }

  /**
   * The series of `rawKey` for `backend` and `outcome` (`''`: a hold, which
   * has none). Looked up through nested maps by the strings as they come:
   * no id string is built per event.
   */
  of(backend: string, outcome: string, rawKey: string): DurationSeries {
    let byOutcome = this.#byKey.get(backend);
    if (byOutcome === undefined) {
      byOutcome = new Map();
      this.#byKey.set(backend, byOutcome);
    }
    let perKey = byOutcome.get(outcome);
    if (perKey === undefined) {
      perKey = new Map();
      byOutcome.set(outcome, perKey);
    }
    let found = perKey.get(rawKey);
    if (found === undefined) {
      found = this.#labelled(backend, outcome, this.#keyLabel(rawKey));
      if (perKey.size >= 10_000) perKey.clear();
      perKey.set(rawKey, found);
    }
    return found;
  }

  #labelled(backend: string, outcome: string, key: string): DurationSeries {
    const id = `${backend}\u0000${outcome}\u0000${key}`;
    let found = this.series.get(id);
    if (found === undefined) {
      found = {
        attributes:
          outcome === ''
            ? { 'raceguard.lock.backend': backend, 'raceguard.lock.key': key }
            : {
                'raceguard.lock.backend': backend,
                'raceguard.lock.outcome': outcome,
                'raceguard.lock.key': key,
              },
        count: 0,
        sum: 0,
        buckets: AGGREGATE_BUCKETS.map(() => 0),
      };
      this.series.set(id, found);
    }
    return found;
  }
}

/** The counters' values, one per counter name and attribute set. */
class Counts {
  readonly values = new Map<string, { name: CounterName; attributes: Attributes; value: number }>();

  /** Add one to the counter `name` of the series `id` (its attributes built only the first time). */
  bump(name: CounterName, id: string, attributes: () => Attributes): void {
    const key = `${name}\u0000${id}`;
    const found = this.values.get(key);
    if (found === undefined) this.values.set(key, { name, attributes: attributes(), value: 1 });
    else found.value += 1;
  }
}

/** The observable instruments: a count, a sum and cumulative buckets per duration, and the counters. */
function createInstruments(meter: Meter) {
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
  const counters = Object.fromEntries(
    Object.entries(COUNTERS).map(([name, { unit }]) => [
      name,
      meter.createObservableCounter(name, { unit }),
    ]),
  ) as Record<CounterName, ReturnType<Meter['createObservableCounter']>>;
  const wait = durations('raceguard.lock.wait.duration', 'Lock waits');
  const hold = durations('raceguard.lock.hold.duration', 'Lock holds');
  return {
    wait,
    hold,
    counters,
    all: [
      wait.count,
      wait.sum,
      wait.bucket,
      hold.count,
      hold.sum,
      hold.bucket,
      ...Object.values(counters),
    ],
  };
}

/** What the tables hold, as the SDK collects it. */
function collect(
  result: BatchObservableResult,
  instruments: ReturnType<typeof createInstruments>,
  tables: { readonly waits: LockDurations; readonly holds: LockDurations; readonly counts: Counts },
): void {
  for (const [durations, kind] of [
    [tables.waits, instruments.wait],
    [tables.holds, instruments.hold],
  ] as const) {
    for (const entry of durations.series.values()) {
      result.observe(kind.count, entry.count, entry.attributes);
      result.observe(kind.sum, entry.sum, entry.attributes);
      let cumulative = 0;
      AGGREGATE_BUCKETS.forEach((bound, i) => {
        cumulative += entry.buckets[i] ?? 0;
        result.observe(kind.bucket, cumulative, { ...entry.attributes, le: bound });
      });
      result.observe(kind.bucket, entry.count, { ...entry.attributes, le: 'inf' });
    }
  }
  for (const { name, attributes, value } of tables.counts.values.values())
    result.observe(instruments.counters[name], value, attributes);
}

/** Keep raceguard's events in local tables until the SDK collects them, until `close()`. */
export function aggregatedTelemetry(
  meter: Meter,
  keyLabel: (key: string) => string,
): RaceguardTelemetry {
  const tables = {
    waits: new LockDurations(keyLabel),
    holds: new LockDurations(keyLabel),
    counts: new Counts(),
  };
  const instruments = createInstruments(meter);
  const onCollect = (result: BatchObservableResult): void => collect(result, instruments, tables);
  meter.addBatchObservableCallback(onCollect, instruments.all);
  return listen(aggregatingHandlers(tables, keyLabel), () =>
    meter.removeBatchObservableCallback(onCollect, instruments.all),
  );
}

/** One handler per channel: each event bumps a count or records a duration in the tables. */
function aggregatingHandlers(
  tables: { readonly waits: LockDurations; readonly holds: LockDurations; readonly counts: Counts },
  keyLabel: (key: string) => string,
): ChannelHandlers {
  const { waits, holds, counts } = tables;
  return {
    lock: (message) => {
      const event = message as LockEvent;
      if (event.event === 'lost') {
        const key = keyLabel(event.key);
        counts.bump(
          'raceguard.lock.lost',
          `${event.backend}\u0000${key}\u0000${event.reason}`,
          () => ({
            'raceguard.lock.backend': event.backend,
            'raceguard.lock.key': key,
            'raceguard.lock.loss_reason': event.reason,
          }),
        );
        return;
      }
      const granted = event.event === 'released';
      observe(
        waits.of(event.backend, granted ? 'acquired' : event.event, event.key),
        event.waitedMs / 1000,
      );
      if (granted) observe(holds.of(event.backend, '', event.key), (event.heldMs ?? 0) / 1000);
    },
    retry: (message) => {
      const event = message as RetryEventMessage;
      counts.bump(
        event.event === 'retry' ? 'raceguard.retries' : 'raceguard.retries.exhausted',
        `${event.operation}\u0000${event.code}`,
        () => ({ 'raceguard.operation': event.operation, 'raceguard.error.code': event.code }),
      );
    },
    idempotency: (message) => {
      const { event } = message as IdempotencyEventMessage;
      counts.bump('raceguard.idempotency.requests', event, () => ({
        'raceguard.idempotency.outcome': event,
      }));
    },
    cache: (message) => {
      const event = message as CacheEventMessage;
      const key = keyLabel(event.key);
      counts.bump(
        'raceguard.cache.events',
        `${event.event}\u0000${key}\u0000${event.tier ?? ''}`,
        () => ({
          'raceguard.cache.event': event.event,
          'raceguard.cache.key': key,
          ...(event.tier !== undefined && { 'raceguard.cache.tier': event.tier }),
        }),
      );
    },
    messaging: (message) => {
      const event = message as MessageEventMessage;
      const key = event.key === undefined ? undefined : keyLabel(event.key);
      counts.bump(
        'raceguard.messages',
        `${event.event}\u0000${key ?? ''}\u0000${event.reason ?? ''}`,
        () => ({
          'raceguard.message.event': event.event,
          ...(key !== undefined && { 'raceguard.message.key': key }),
          ...(event.reason !== undefined && { 'raceguard.message.reason': event.reason }),
        }),
      );
    },
    replica: (message) => {
      const event = message as ReplicaEventMessage;
      counts.bump(
        'raceguard.replica.reads',
        `${event.source}\u0000${event.fallback ?? ''}`,
        () => ({
          'raceguard.replica.source': event.source,
          ...(event.fallback !== undefined && { 'raceguard.replica.fallback': event.fallback }),
        }),
      );
    },
  };
}
