/**
 * The instruments raceguard records, declared once for both modes of
 * `instrumentRaceguard` (the table in `raceguard/otel`'s documentation).
 */

/** The counters: name → unit and description. */
export const COUNTERS = {
  'raceguard.retries': {
    unit: '{retry}',
    description: 'Transactions and optimistic updates run again after a conflict',
  },
  'raceguard.retries.exhausted': {
    unit: '{operation}',
    description: 'Transactions and optimistic updates that gave up after their last attempt',
  },
  'raceguard.lock.lost': {
    unit: '{lock}',
    description:
      'Held locks lost (lease ran out or could not be renewed, session ended, event loop stalled)',
  },
  'raceguard.idempotency.requests': {
    unit: '{request}',
    description: 'Idempotent requests by how they were served',
  },
  'raceguard.cache.events': {
    unit: '{event}',
    description: 'LeaseCache hits, misses, fills, refused stale fills, waits and Redis failures',
  },
  'raceguard.messages': {
    unit: '{message}',
    description:
      'What the ordered consumer did with each message: applied, duplicate, buffered, retry, dead-letter, gap, requeued',
  },
  'raceguard.replica.reads': {
    unit: '{read}',
    description: 'Reads of ReplicaRouter by where they went',
  },
} as const;

/** The name of a counter. */
export type CounterName = keyof typeof COUNTERS;

/** The durations (histograms in the per-event mode; count, sum and buckets when aggregated). */
export const DURATIONS = {
  'raceguard.lock.wait.duration': {
    unit: 's',
    description: 'Time from asking for a lock to its grant or refusal',
  },
  'raceguard.lock.hold.duration': { unit: 's', description: 'Time a lock was held' },
  'raceguard.cache.duration': {
    unit: 's',
    description:
      "LeaseCache loader time (fill), and how long a caller waited for another's fill before giving up (wait)",
  },
} as const;
