/**
 * The default mode of `instrumentRaceguard`: one SDK call per event (a
 * histogram record or a counter add), and span events on the active span.
 */
import { trace, type Attributes, type Meter } from '@opentelemetry/api';
import type {
  CacheEventMessage,
  IdempotencyEventMessage,
  LockEvent,
  MessageEventMessage,
  ReplicaEventMessage,
  RetryEventMessage,
} from '../core/events.js';
import { COUNTERS, DURATIONS, type CounterName } from './instruments.js';
import { listen, type ChannelHandlers, type RaceguardTelemetry } from './listen.js';

/** The instruments of the per-event mode (see the table in `raceguard/otel`). */
function createInstruments(meter: Meter) {
  const counter = (name: CounterName) => meter.createCounter(name, COUNTERS[name]);
  const histogram = (name: keyof typeof DURATIONS) => meter.createHistogram(name, DURATIONS[name]);
  return {
    lockWait: histogram('raceguard.lock.wait.duration'),
    lockHold: histogram('raceguard.lock.hold.duration'),
    cacheTimes: histogram('raceguard.cache.duration'),
    retries: counter('raceguard.retries'),
    exhausted: counter('raceguard.retries.exhausted'),
    lost: counter('raceguard.lock.lost'),
    idempotency: counter('raceguard.idempotency.requests'),
    cacheEvents: counter('raceguard.cache.events'),
    messages: counter('raceguard.messages'),
    replicaReads: counter('raceguard.replica.reads'),
  };
}

/** Record every event as it comes, until `close()`. */
export function perEventTelemetry(
  meter: Meter,
  keyLabel: (key: string) => string,
  spanEvents: boolean,
): RaceguardTelemetry {
  return listen(perEventHandlers(createInstruments(meter), keyLabel, spanEvents));
}

/** One handler per channel: an SDK call per event, and a span event where it tells a story. */
function perEventHandlers(
  instruments: ReturnType<typeof createInstruments>,
  keyLabel: (key: string) => string,
  spanEvents: boolean,
): ChannelHandlers {
  const {
    lockWait,
    lockHold,
    retries,
    exhausted,
    lost,
    idempotency,
    cacheEvents,
    cacheTimes,
    messages,
    replicaReads,
  } = instruments;
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
    // Built only when span events are on: this runs on every use of every lock.
    if (spanEvents)
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
    if (spanEvents)
      addEvent(event.event === 'retry' ? 'raceguard.retry' : 'raceguard.retry.exhausted', {
        ...attributes,
        'raceguard.attempt': event.attempt,
      });
  };
  const onIdempotency = (message: unknown): void => {
    const { event } = message as IdempotencyEventMessage;
    idempotency.add(1, { 'raceguard.idempotency.outcome': event });
    if (spanEvents) addEvent('raceguard.idempotency', { 'raceguard.idempotency.outcome': event });
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
  return {
    lock: onLock,
    retry: onRetry,
    idempotency: onIdempotency,
    cache: onCache,
    messaging: onMessage,
    replica: onReplica,
  };
}
