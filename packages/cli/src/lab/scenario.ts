/**
 * What a lab scenario is: a schema, fixtures, a burst of requests, the
 * business logic written once per strategy, and the invariants that must
 * hold afterwards.
 */
import type { Locker } from 'raceguard';
import type { RowStrategy } from './row-workload.js';
import type { LabDb, LabKey, LabPool, LabRetryOptions, Row } from './sql.js';

/** Strategies that take a lock around the unchanged read-check-write. */
export type LockStrategy = 'local-mutex' | 'redis-lock' | 'lease-lock' | 'etcd-lock';

/** How a handler protects its read-check-write. */
export type Strategy =
  | Exclude<RowStrategy, 'combined'>
  | 'idempotency-key'
  | MessageStrategy
  | CacheStrategy
  | ReplicaStrategy
  | ClockStrategy
  | LockStrategy;

/** How a message consumer protects per-key order and exactly-once effects. */
export type MessageStrategy = 'ordered-consumer' | 'inbox';

/**
 * How a cache is kept from serving a price a writer replaced (`unsafe` is
 * plain cache-aside: read, miss, load, set; the writer deletes after
 * committing). `delete-before-write` and `double-delete` are the folklore
 * fixes, run to show that a slow reader still defeats them; `lease-cache`
 * and `versioned-write` are raceguard's `LeaseCache` (invalidation voids
 * fills in flight; write-through keeps only newer versions).
 */
export type CacheStrategy =
  'delete-before-write' | 'double-delete' | 'lease-cache' | 'versioned-write';

/**
 * How a read after a write is routed when replicas lag (`unsafe` reads any
 * replica): `primary-window` is the fixed guess (the primary for a while
 * after the session's write, as Rails does for 2 s), `session-token` is
 * raceguard's `ReplicaRouter`.
 */
export type ReplicaStrategy = 'primary-window' | 'session-token';

/** How timestamps across skewed clocks are made (`unsafe`: wall-clock time): a hybrid logical clock. */
export type ClockStrategy = 'hlc';

/** The replica strategies, in report order. */
export const REPLICA_STRATEGIES: readonly ReplicaStrategy[] = ['primary-window', 'session-token'];

/** The cache strategies, in report order. */
export const CACHE_STRATEGIES: readonly CacheStrategy[] = [
  'delete-before-write',
  'double-delete',
  'lease-cache',
  'versioned-write',
];

/** Strategies known not to fix their race, run to show it: they are expected to show anomalies. */
export const KNOWN_UNSAFE: readonly Strategy[] = [
  'unsafe',
  'delete-before-write',
  'double-delete',
  'primary-window',
];

/** The database-level strategies: what `raceguard lab` runs by default. */
export const STRATEGIES: readonly Strategy[] = [
  'unsafe',
  'atomic',
  'pessimistic',
  'optimistic',
  'serializable',
  'advisory-lock',
  'idempotency-key',
  'ordered-consumer',
  'inbox',
  ...CACHE_STRATEGIES,
  ...REPLICA_STRATEGIES,
  'hlc',
];

/**
 * Lock strategies, run on request (`--strategy`): an in-process mutex
 * (correct with one server, broken with two), and the Redis, PostgreSQL
 * lease and etcd locks (correct across servers).
 */
export const LOCK_STRATEGIES: readonly LockStrategy[] = [
  'local-mutex',
  'redis-lock',
  'lease-lock',
  'etcd-lock',
];

/** Every strategy the lab knows. */
export const ALL_STRATEGIES: readonly Strategy[] = [...STRATEGIES, ...LOCK_STRATEGIES];

/** The answer of a handler: HTTP status and JSON body. */
export interface HandlerResult {
  /**
   * 200 done, 409 conflict (lost a race, retry later), 412 precondition failed
   * (the version the client edited is gone), 422 refused by a business rule.
   */
  readonly status: 200 | 409 | 412 | 422;
  readonly body: Readonly<Record<string, unknown>>;
}

/** What a handler gets besides its request body. */
export interface HandlerContext {
  /** The service's pool, on PostgreSQL or MySQL / MariaDB. */
  readonly pool: LabPool;
  /** The awaited pause between read and write that real code has (a call out, a render, a log flush). */
  readonly gap: () => Promise<void>;
  /** Options every transaction and optimistic update of the lab uses (retry counting, attempts). */
  readonly retryOptions: LabRetryOptions;
  /** This server's lockers for the lock strategies that were set up. */
  readonly lockers: Partial<Record<LockStrategy, Locker>>;
  /** MySQL: the `GET_LOCK` locker of the `advisory-lock` strategy (PostgreSQL's advisory locks need none). */
  readonly advisoryLock?: Locker;
}

/** The fixture parameters of one trial. */
export interface TrialShape {
  /** Requests in the burst. */
  readonly concurrency: number;
}

/** One response of a burst, as the invariant checks see it. */
export interface ObservedResponse {
  readonly status: number;
  readonly body: unknown;
  /** The request body that produced it. */
  readonly request: Readonly<Record<string, unknown>>;
}

/** Anomaly kind to how many times it was seen in one trial. */
export type Anomalies = Record<string, number>;

/** The strategies a scenario runs when it does not list its own: the request-race fixes. */
export const RACE_STRATEGIES: readonly Strategy[] = ALL_STRATEGIES.filter(
  (s) =>
    s !== 'idempotency-key' &&
    s !== 'ordered-consumer' &&
    s !== 'inbox' &&
    !(CACHE_STRATEGIES as readonly Strategy[]).includes(s) &&
    !(REPLICA_STRATEGIES as readonly Strategy[]).includes(s) &&
    s !== 'hlc',
);

/** Whether `strategy` applies to `scenario` (its bug is one that strategy can fix). */
export function appliesTo(scenario: Pick<Scenario, 'strategies'>, strategy: Strategy): boolean {
  return (scenario.strategies ?? RACE_STRATEGIES).includes(strategy);
}

/** A lab scenario. */
export interface Scenario {
  /** Identifier used in URLs and on the command line, e.g. `inventory`. */
  readonly name: string;
  /** One line for the report. */
  readonly title: string;
  /** The invariants, in words. */
  readonly invariant: string;
  /** The strategies that apply to this scenario's bug. @default RACE_STRATEGIES */
  readonly strategies?: readonly Strategy[];
  /** Recreate this scenario's tables; the DDL may depend on the strategy (the atomic fix may need a constraint). */
  createSchema(db: LabDb, strategy: Strategy): Promise<void>;
  /** Insert the fixtures of one trial. */
  seed(db: LabDb, shape: TrialShape): Promise<void>;
  /** The request bodies of one burst. */
  requests(shape: TrialShape): Readonly<Record<string, unknown>>[];
  /** The row a pessimistic or serializable variant reads first, and the advisory lock key. */
  target(request: Readonly<Record<string, unknown>>): {
    table: string;
    key: LabKey;
    lockKey: string;
  };
  /**
   * The business logic after the target row was read (possibly locked):
   * checks, the gap, then writes, all through `db`. The `unsafe`,
   * `pessimistic`, `serializable` and `advisory-lock` variants share it.
   */
  checkThenAct(
    db: LabDb,
    row: Row,
    request: Readonly<Record<string, unknown>>,
    context: HandlerContext,
  ): Promise<HandlerResult>;
  /** The single-statement fix. */
  atomic(
    request: Readonly<Record<string, unknown>>,
    context: HandlerContext,
  ): Promise<HandlerResult>;
  /** The version-check fix. */
  optimistic(
    request: Readonly<Record<string, unknown>>,
    context: HandlerContext,
  ): Promise<HandlerResult>;
  /** The idempotency-key fix (scenarios of duplicate requests). */
  idempotent?(
    request: Readonly<Record<string, unknown>>,
    context: HandlerContext,
  ): Promise<HandlerResult>;
  /** Invariant violations after the burst, read from the database and the responses. */
  check(db: LabDb, responses: readonly ObservedResponse[], shape: TrialShape): Promise<Anomalies>;
}

/** Read one integer column of the first row (count(*), sums, ...). */
export async function scalar(db: LabDb, text: string, values?: unknown[]): Promise<number> {
  const { rows } = await db.query(text, values);
  const first = rows[0];
  return Number(first === undefined ? Number.NaN : Object.values(first)[0]);
}

/** Add `count` to `kind` when positive. */
export function countAnomaly(anomalies: Anomalies, kind: string, count: number): void {
  if (count > 0) anomalies[kind] = (anomalies[kind] ?? 0) + count;
}

/** The number of 2xx responses. */
export function accepted(responses: readonly ObservedResponse[]): number {
  return responses.filter((r) => r.status >= 200 && r.status < 300).length;
}

/** Read `field` of a request body as a string. */
export function field(request: Readonly<Record<string, unknown>>, name: string): string {
  const value = request[name];
  return typeof value === 'string' ? value : String(value);
}

/** Read `field` of a row as a number. */
export function numberColumn(row: Row | undefined, name: string): number {
  return Number(row?.[name]);
}
