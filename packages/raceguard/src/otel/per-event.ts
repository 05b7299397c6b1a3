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
import { listen, type ChannelHandlers, type RaceguardTelemetry } from './listen.js';

/** The instruments of the per-event mode (see the table in `raceguard/otel`). */
function createInstruments(meter: Meter) {
  return {
    lockWait: meter.createHistogram('raceguard.lock.wait.duration', {
      unit: 's',
      description: 'Time from asking for a lock to its grant or refusal',
    }),
    lockHold: meter.createHistogram('raceguard.lock.hold.duration', {
      unit: 's',
      description: 'Time a lock was held',
    }),
    retries: meter.createCounter('raceguard.retries', {
      unit: '{retry}',
      description: 'Transactions and optimistic updates run again after a conflict',
    }),
    exhausted: meter.createCounter('raceguard.retries.exhausted', {
      unit: '{operation}',
      description: 'Transactions and optimistic updates that gave up after their last attempt',
    }),
    lost: meter.createCounter('raceguard.lock.lost', {
      unit: '{lock}',
      description:
        'Held locks lost (lease ran out or could not be renewed, session ended, event loop stalled)',
    }),
    idempotency: meter.createCounter('raceguard.idempotency.requests', {
      unit: '{request}',
      description: 'Idempotent requests by how they were served',
    }),
    cacheEvents: meter.createCounter('raceguard.cache.events', {
      unit: '{event}',
      description: 'LeaseCache hits, misses, fills, refused stale fills, waits and Redis failures',
    }),
    cacheTimes: meter.createHistogram('raceguard.cache.duration', {
      unit: 's',
      description:
        "LeaseCache loader time (fill), and how long a caller waited for another's fill before giving up (wait)",
    }),
    messages: meter.createCounter('raceguard.messages', {
      unit: '{message}',
      description:
        'What the ordered consumer did with each message: applied, duplicate, buffered, retry, dead-letter, gap, requeued',
    }),
    replicaReads: meter.createCounter('raceguard.replica.reads', {
      unit: '{read}',
      description: 'Reads of ReplicaRouter by where they went',
    }),
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
  return {
    lock: onLock,
    retry: onRetry,
    idempotency: onIdempotency,
    cache: onCache,
    messaging: onMessage,
    replica: onReplica,
  };
}
