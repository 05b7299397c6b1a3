import { dependent, type Footprint } from './footprint.js';
import { createRandom, type Random } from './random.js';

/** A task that is ready to resume, as a strategy sees it. */
export interface ReadyTask {
  readonly task: number;
  /** Where it would resume. */
  readonly label: string;
  /** What the step touches (a table, a Redis key, an HTTP origin), when known. */
  readonly resource: string | undefined;
  /** Its reads and writes (see footprint.ts); `undefined` for anything. */
  readonly footprint: Footprint;
}

/** What a strategy knows when it picks the next task to resume. */
export interface Decision {
  /** 0-based index of this step in the run. */
  readonly step: number;
  readonly ready: readonly ReadyTask[];
  /** The task that ran the previous step, if any. */
  readonly current: number | undefined;
  /** True when this call follows a wait for the task the strategy asked for last time. */
  readonly retried: boolean;
  /** What the previous step touched, as far as is known now. */
  readonly previousFootprint: Footprint;
}

/** Picks which ready task resumes next. One instance per run. */
export interface Strategy {
  /** A short description (`random`, `pct:3`, ...), shown in failures. */
  readonly name: string;
  /** True when a task it asks for must come, however long its call takes (replay). */
  readonly strict?: boolean;
  /**
   * True when every task it asks for was ready at that point of a run made
   * before (a search following a prefix): the run waits for it up to a
   * second, not just as long as a call usually takes, so a slow reply does
   * not send the run elsewhere.
   */
  readonly patient?: boolean;
  /** Returns the index of a task; a task that is not ready makes the run wait for it. */
  pick(decision: Decision): number;
}

/** Continue the current task while it is ready, else the lowest-numbered ready one: no preemption. */
export function defaultChoice(decision: Decision): number {
  if (
    decision.current !== undefined &&
    decision.ready.some((ready) => ready.task === decision.current)
  ) {
    return decision.current;
  }
  let lowest = Number.POSITIVE_INFINITY;
  for (const ready of decision.ready) lowest = Math.min(lowest, ready.task);
  return lowest;
}

/** Uniformly random among the ready tasks at every step (what fast-check's scheduler does). */
export function randomStrategy(seed: number): Strategy {
  const random = createRandom(seed);
  return {
    name: 'random',
    pick: (decision) => decision.ready[random.int(decision.ready.length)]!.task,
  };
}

/**
 * Random with a bias to switch: when another task is ready, it is picked
 * with probability `switchRate` (uniformly among the others). Small programs'
 * bugs need their few steps interleaved closely; this finds them sooner than
 * uniform choice, which keeps the current task 1/n of the time.
 */
export function switchingStrategy(seed: number, switchRate?: number): Strategy {
  const random = createRandom(seed);
  const rate = switchRate ?? random.next();
  return {
    name: 'switching',
    pick(decision) {
      const others = decision.ready.filter((ready) => ready.task !== decision.current);
      if (others.length > 0 && others.length < decision.ready.length && random.next() < rate) {
        return others[random.int(others.length)]!.task;
      }
      return decision.ready[random.int(decision.ready.length)]!.task;
    },
  };
}

/**
 * PCT (Burckhardt et al., ASPLOS 2010): random distinct priorities per task,
 * always run the highest ready one, and at `depth - 1` random steps lower the
 * running task below every other. A bug of depth d among n tasks and k steps
 * is found with probability at least 1/(n·k^(d-1)) per run.
 */
export function pctStrategy(seed: number, depth: number, expectedSteps: number): Strategy {
  const random = createRandom(seed);
  const priorities = new Map<number, number>();
  const changes = new Map<number, number>();
  for (let index = 1; index < depth; index += 1) {
    changes.set(1 + random.int(Math.max(1, expectedSteps)), depth - index);
  }
  const priorityOf = (task: number): number => {
    let priority = priorities.get(task);
    if (priority === undefined) {
      // Fresh tasks get a random priority above every lowered one.
      priority = depth + random.next() * 1_000_000;
      priorities.set(task, priority);
    }
    return priority;
  };
  return {
    name: `pct:${depth}`,
    pick(decision) {
      const lowered = changes.get(decision.step);
      if (lowered !== undefined && decision.current !== undefined && !decision.retried) {
        priorities.set(decision.current, lowered);
      }
      let best = decision.ready[0]!.task;
      for (const ready of decision.ready) {
        if (priorityOf(ready.task) > priorityOf(best)) best = ready.task;
      }
      return best;
    },
  };
}

/**
 * Partial-order sampling (Yuan et al., CAV 2018): every ready step carries a
 * random priority that survives until a step racing with it (same resource,
 * or an unknown one) runs; the highest priority runs. Steps on unrelated
 * resources keep their order, so schedules differing only by commuting
 * steps are not sampled again and again.
 */
export function posStrategy(seed: number): Strategy {
  const random = createRandom(seed);
  const priorities = new Map<string, number>();
  const keyOf = (ready: ReadyTask): string => `${ready.task}\u0000${ready.label}`;
  let last: ReadyTask | undefined;
  return {
    name: 'pos',
    pick(decision) {
      if (last !== undefined && !decision.retried) {
        for (const ready of decision.ready) {
          if (dependent(last.footprint, ready.footprint)) {
            priorities.delete(keyOf(ready));
          }
        }
      }
      let best: ReadyTask = decision.ready[0]!;
      let bestPriority = -1;
      for (const ready of decision.ready) {
        let priority = priorities.get(keyOf(ready));
        if (priority === undefined) {
          priority = random.next();
          priorities.set(keyOf(ready), priority);
        }
        if (priority > bestPriority) {
          best = ready;
          bestPriority = priority;
        }
      }
      priorities.delete(keyOf(best));
      last = best;
      return best.task;
    },
  };
}

/**
 * Follows a recorded list of choices, then runs without preemption.
 * `strict`: a recorded task that never becomes ready is an error (replay);
 * otherwise the default choice stands in for it (shrinking, systematic search).
 */
export function prefixStrategy(
  choices: readonly number[],
  strict: boolean,
  onDiverge: (step: number, wanted: number, ready: readonly number[]) => never,
  patient = strict,
): Strategy {
  return {
    name: strict ? 'replay' : 'prefix',
    strict,
    patient,
    pick(decision) {
      const wanted = choices[decision.step];
      if (wanted === undefined) return defaultChoice(decision);
      if (decision.ready.some((ready) => ready.task === wanted)) return wanted;
      if (!decision.retried) return wanted; // wait once for it to become ready
      if (strict) {
        onDiverge(
          decision.step,
          wanted,
          decision.ready.map((ready) => ready.task),
        );
      }
      return defaultChoice(decision);
    },
  };
}

/** Names accepted by `explore`'s `strategy` option. */
export type StrategyName = 'portfolio' | 'random' | 'switching' | 'pct' | 'pos' | 'systematic';

export type { Random };
