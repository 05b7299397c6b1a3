import { RaceguardError } from '../core/errors.js';

/** One step of an interleaving: which task resumed, and where. */
export interface TraceStep {
  /** The task's index, in the order tasks were spawned. */
  readonly task: number;
  /** The name the program gave the task. */
  readonly taskName: string;
  /** Where the task resumed: `start`, an explicit point, or the I/O call that returned. */
  readonly label: string;
  /** True when another task was stopped at this step although it could have gone on. */
  readonly preemption: boolean;
}

/**
 * A schedule made the program fail: an assertion, a task's error, a deadlock
 * or a hang. Carries the schedule as a replay string and the interleaving as
 * a trace.
 *
 * @example
 * ```ts
 * const report = await explore(program, { runs: 1000 });
 * if (report.failure) {
 *   console.log(report.failure.replay); // pass as { replay } to run it again
 *   console.log(report.failure.traceText);
 * }
 * ```
 */
export class ExploreFailure extends RaceguardError {
  /** The schedule, to pass back as `{ replay }`: it runs exactly this interleaving again. */
  readonly replay: string;
  /** The steps of the failing interleaving, in order. */
  readonly trace: readonly TraceStep[];
  /** The trace as a table for people. */
  readonly traceText: string;
  /** Preemptions in the (shrunk) schedule. */
  readonly preemptions: number;
  /** The run (1-based) in which the first failure appeared. */
  readonly run: number;
  /** The exploration's seed, to repeat the whole exploration with `{ seed }`. */
  readonly seed: number;
  /** The strategy of the run that failed. */
  readonly strategy: string;

  constructor(details: {
    readonly replay: string;
    readonly trace: readonly TraceStep[];
    readonly traceText: string;
    readonly preemptions: number;
    readonly run: number;
    readonly seed: number;
    readonly strategy: string;
    readonly cause: unknown;
  }) {
    const reason = details.cause instanceof Error ? details.cause.message : String(details.cause);
    super(
      'RACEGUARD_EXPLORE_FAILED',
      `a schedule fails (run ${details.run}, strategy ${details.strategy}, ${details.preemptions} preemption${details.preemptions === 1 ? '' : 's'}): ${reason}\n` +
        `replay: ${details.replay}\nseed: ${details.seed}\n${details.traceText}`,
      { cause: details.cause },
    );
    this.replay = details.replay;
    this.trace = details.trace;
    this.traceText = details.traceText;
    this.preemptions = details.preemptions;
    this.run = details.run;
    this.seed = details.seed;
    this.strategy = details.strategy;
  }
}

/** Every live task waits on something no other task will ever provide. */
export class DeadlockError extends RaceguardError {
  /** The blocked tasks with the last place each resumed from. */
  readonly tasks: readonly { readonly name: string; readonly lastLabel: string }[];

  constructor(
    tasks: readonly { readonly name: string; readonly lastLabel: string }[],
    waitedMs: number,
  ) {
    super(
      'RACEGUARD_EXPLORE_DEADLOCK',
      `deadlock: ${tasks.map((task) => `${task.name} (last at ${task.lastLabel})`).join(', ')} ` +
        `made no progress for ${waitedMs} ms with nothing left to schedule`,
    );
    this.tasks = tasks;
  }
}

/** An intercepted call did not return within `stepTimeoutMs` while nothing else could run. */
export class StepTimeoutError extends RaceguardError {
  constructor(labels: readonly string[], waitedMs: number) {
    super(
      'RACEGUARD_EXPLORE_STEP_TIMEOUT',
      `no task could go on for ${waitedMs} ms; still waiting on: ${labels.join(', ')}`,
    );
  }
}

/** A replayed schedule asked for a task that never became ready: the program is not the one recorded. */
export class ReplayDivergedError extends RaceguardError {
  constructor(step: number, wanted: number, ready: readonly number[]) {
    super(
      'RACEGUARD_EXPLORE_REPLAY_DIVERGED',
      `replay diverged at step ${step + 1}: the schedule resumes task ${wanted}, but only ` +
        `[${ready.join(', ')}] ${ready.length === 1 ? 'is' : 'are'} ready; the program or its data changed since the schedule was recorded`,
    );
  }
}
