/**
 * The fourth shape of lab scenario, a sibling of the HTTP, message and
 * cache ones: a race between a write on the primary and the read that
 * follows it on a replica that has not replayed the write yet. The lab
 * starts a real primary and hot standby for it, with real replay lag.
 */
import type { Pool } from 'pg';
import type { Anomalies, ReplicaStrategy } from './scenario.js';

/** The replicated pair a replica scenario runs on. */
export interface LabReplicas {
  readonly primary: Pool;
  readonly replica: Pool;
  /** Hold back the standby's replay of every commit by `ms`. */
  setApplyDelay(ms: number): Promise<void>;
  /** Where it came from, for the report. */
  readonly origin: string;
}

/** What one trial of a replica scenario measured. */
export interface ReplicaTrial {
  readonly anomalies: Anomalies;
  /** Reads served. */
  readonly reads: number;
  /** Reads the replica served. */
  readonly replicaReads: number;
  readonly writes: number;
  /** Per read: from call to rows. */
  readonly latenciesMs: readonly number[];
  readonly durationMs: number;
}

/** What a trial gets. */
export interface ReplicaTrialContext {
  readonly replicas: LabReplicas;
  readonly strategy: 'unsafe' | ReplicaStrategy;
  /** Sessions (people) in the trial, each writing once and reading back. */
  readonly keys: number;
  readonly signal: AbortSignal | undefined;
}

/** A lab scenario of reads after writes on a lagging replica. */
export interface ReplicaScenario {
  readonly shape: 'replicas';
  readonly name: string;
  readonly title: string;
  readonly invariant: string;
  readonly strategies: readonly ('unsafe' | ReplicaStrategy)[];
  /** Recreate the scenario's tables (on the primary; the standby replays them). */
  createSchema(replicas: LabReplicas): Promise<void>;
  runTrial(context: ReplicaTrialContext): Promise<ReplicaTrial>;
}
