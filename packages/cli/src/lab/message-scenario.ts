/**
 * The second shape of lab scenario, a sibling of the HTTP one: a race
 * between messages. Events are published concurrently (with duplicates, as
 * redelivery produces them), consumed by several workers, and the
 * invariants are checked in the database afterwards.
 */
import type { PoolLike } from 'raceguard/postgres';
import type { NatsConnection } from 'nats';
import type { Anomalies, Strategy } from './scenario.js';

/** The broker a message scenario runs on. */
export interface LabBroker {
  readonly nats: NatsConnection;
  /** Where it came from, for the report: `NATS_URL`, the machine's server, or one started for the lab. */
  readonly origin: string;
}

/** What one trial of a message scenario measured. */
export interface MessageTrial {
  readonly anomalies: Anomalies;
  /** Events applied. */
  readonly applied: number;
  /** Deliveries dropped as duplicates. */
  readonly duplicates: number;
  /** Handler attempts that failed and were retried or redelivered. */
  readonly retries: number;
  /** Deliveries published in the trial (events and their duplicates). */
  readonly deliveries: number;
  /** Per delivery: from taken to settled. */
  readonly latenciesMs: readonly number[];
  readonly durationMs: number;
}

/** What a trial gets. */
export interface MessageTrialContext {
  readonly pool: PoolLike;
  readonly broker: LabBroker;
  readonly strategy: Strategy;
  /** Orders (keys) in the trial. */
  readonly keys: number;
  /** Consumer workers. */
  readonly workers: number;
  readonly signal: AbortSignal | undefined;
}

/** A lab scenario of messages. */
export interface MessageScenario {
  readonly shape: 'messages';
  readonly name: string;
  readonly title: string;
  readonly invariant: string;
  /** `unsafe` and the consumer strategies that fix it. */
  readonly strategies: readonly Strategy[];
  /** Recreate the scenario's tables. */
  createSchema(pool: PoolLike): Promise<void>;
  /** Publish, consume and check one trial. */
  runTrial(context: MessageTrialContext): Promise<MessageTrial>;
}
