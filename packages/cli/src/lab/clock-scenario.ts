/**
 * The fifth shape of lab scenario, a sibling of the others: a race decided
 * by timestamps from machines whose wall clocks disagree. Two nodes, one
 * running ahead, write the same rows; what a row keeps is decided by its
 * stamps, and the invariant is checked in the database.
 */
import type { LabPool } from './sql.js';
import type { Anomalies, ClockStrategy } from './scenario.js';

/** What one trial of a clock scenario measured. */
export interface ClockTrial {
  readonly anomalies: Anomalies;
  /** Writes that landed. */
  readonly applied: number;
  /** Writes the register refused as older than what it holds. */
  readonly refused: number;
  readonly latenciesMs: readonly number[];
  readonly durationMs: number;
}

/** What a trial gets. */
export interface ClockTrialContext {
  /** The lab's pool, on PostgreSQL or MySQL / MariaDB. */
  readonly pool: LabPool;
  readonly strategy: 'unsafe' | ClockStrategy;
  /** Registers in the trial. */
  readonly keys: number;
  readonly signal: AbortSignal | undefined;
}

/** A lab scenario of timestamps across skewed clocks. */
export interface ClockScenario {
  readonly shape: 'clocks';
  readonly name: string;
  readonly title: string;
  readonly invariant: string;
  readonly strategies: readonly ('unsafe' | ClockStrategy)[];
  createSchema(pool: LabPool): Promise<void>;
  runTrial(context: ClockTrialContext): Promise<ClockTrial>;
}
