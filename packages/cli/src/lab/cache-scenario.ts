/**
 * The third shape of lab scenario, a sibling of the HTTP and message ones:
 * a race between readers that fill a cache and writers that change the
 * database under it. Readers are slow on purpose (a pause between loading
 * the row and storing it: a GC pause, a busy event loop), writers change the
 * row during that pause and apply the strategy's cache update, and every
 * read that began after a writer's response is checked against the price
 * the writer committed.
 */
import type { Redis } from 'ioredis';
import type { LabPool } from './sql.js';
import type { Anomalies, CacheStrategy, Strategy } from './scenario.js';

/** The Redis a cache scenario runs on. */
export interface LabRedis {
  /** Commands. */
  readonly client: Redis;
  /** A second connection for pub/sub (fill wake-ups). */
  readonly subscriber: Redis;
  /** Where it came from, for the report: `REDIS_URL`, a server started for the lab, or the machine's. */
  readonly origin: string;
}

/** What one trial of a cache scenario measured. */
export interface CacheTrial {
  readonly anomalies: Anomalies;
  /** Reads served (the slow readers' and the checks' after each write). */
  readonly reads: number;
  /** Writes to the database (one per key). */
  readonly writes: number;
  /** Fills the cache refused because a write overtook them: stale sets prevented. */
  readonly refusedFills: number;
  /** Per read: from call to value. */
  readonly latenciesMs: readonly number[];
  readonly durationMs: number;
}

/** What a trial gets. */
export interface CacheTrialContext {
  /** The lab's pool, on PostgreSQL or MySQL / MariaDB. */
  readonly pool: LabPool;
  readonly redis: LabRedis;
  readonly strategy: Strategy;
  /** Keys (products) in the trial, each with its slow reader and its writer. */
  readonly keys: number;
  readonly signal: AbortSignal | undefined;
}

/** A lab scenario of a cache over the database. */
export interface CacheScenario {
  readonly shape: 'cache';
  readonly name: string;
  readonly title: string;
  readonly invariant: string;
  /** `unsafe` (cache-aside) and the cache strategies. */
  readonly strategies: readonly ('unsafe' | CacheStrategy)[];
  /** Recreate the scenario's tables. */
  createSchema(pool: LabPool): Promise<void>;
  /** Read, write and check one trial. */
  runTrial(context: CacheTrialContext): Promise<CacheTrial>;
}
