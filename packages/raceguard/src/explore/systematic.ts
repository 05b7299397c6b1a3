import type { ExecutionRecord } from './execution.js';
import { prefixStrategy, type Strategy } from './strategies.js';

/**
 * Preemption-bounded search (CHESS, Musuvathi and Qadeer, PLDI 2007): every
 * schedule with at most `bound` preemptions, fewest preemptions first. Each
 * run follows a prefix of choices and then runs without preemption; every
 * other choice it could have made after the prefix becomes a new prefix.
 */
export class SystematicSearch {
  private readonly queues: number[][][];
  private started = false;

  constructor(private readonly bound: number) {
    this.queues = Array.from({ length: bound + 1 }, () => []);
  }

  /** True when every schedule within the bound has been handed out. */
  get exhausted(): boolean {
    return this.started && this.queues.every((queue) => queue.length === 0);
  }

  /** The next prefix to run, or undefined when the search is done. */
  next(): number[] | undefined {
    if (!this.started) {
      this.started = true;
      return [];
    }
    for (const queue of this.queues) {
      const prefix = queue.shift();
      if (prefix !== undefined) return prefix;
    }
    return undefined;
  }

  /** Adds the alternatives of a run made from a prefix of `prefixLength` choices. */
  expand(record: ExecutionRecord, prefixLength: number): void {
    let preemptions = 0;
    for (let index = 0; index < record.choices.length; index += 1) {
      const ready = record.readySets[index]!;
      const current = record.currents[index];
      const currentReady = current !== undefined && ready.includes(current);
      const chosen = record.choices[index]!;
      if (index >= prefixLength) {
        for (const alternative of ready) {
          if (alternative === chosen) continue;
          const cost = preemptions + (currentReady && alternative !== current ? 1 : 0);
          if (cost <= this.bound)
            this.queues[cost]!.push([...record.choices.slice(0, index), alternative]);
        }
      }
      if (currentReady && chosen !== current) preemptions += 1;
    }
  }
}

/** A search over schedules: one strategy per run, told what each run did. */
export interface ScheduleSearch {
  /** The strategy of the next run, or undefined when the search is done. */
  next(): Strategy | undefined;
  /** Learns from the run just made with the last strategy {@link next} returned. */
  expand(record: ExecutionRecord): void;
  /** True when every schedule the search covers was run, each as it was given. */
  readonly exhausted: boolean;
  /** Runs that could not follow the schedule they were given (the program or its I/O decided otherwise). */
  readonly strayed: number;
  /** What the search has proved so far, or why it proved nothing, in words. */
  proof(): string;
}

/** `1 schedule`, `12 schedules`. */
export const schedules = (count: number): string => `${count} schedule${count === 1 ? '' : 's'}`;

/** Why a search whose runs strayed from their schedules proves nothing. */
export const strayedProof = (strayed: number, runs: number): string =>
  `not proved: ${strayed} of ${schedules(runs)} strayed from the schedule they were given (the program, or its I/O, is not deterministic)`;

/** {@link SystematicSearch} as a {@link ScheduleSearch}: prefixes followed, then no preemption. */
export function boundedSearch(
  bound: number,
  onDiverge: (step: number, wanted: number, ready: readonly number[]) => never,
): ScheduleSearch {
  const search = new SystematicSearch(bound);
  let prefix: number[] | undefined;
  let runs = 0;
  let diverged = 0;
  return {
    next() {
      prefix = search.next();
      return prefix === undefined
        ? undefined
        : { ...prefixStrategy(prefix, false, onDiverge, true), name: 'systematic' };
    },
    expand(record) {
      runs += 1;
      if (prefix?.some((task, index) => record.choices[index] !== task) === true) diverged += 1;
      search.expand(record, prefix?.length ?? 0);
    },
    get exhausted() {
      return search.exhausted && diverged === 0;
    },
    get strayed() {
      return diverged;
    },
    proof: () => {
      const preemptions = `${bound} preemption${bound === 1 ? '' : 's'}`;
      if (diverged > 0) return strayedProof(diverged, runs);
      return search.exhausted
        ? `every schedule with at most ${preemptions}: ${schedules(runs)}`
        : `not proved: ${schedules(runs)} run, the search within ${preemptions} not finished`;
    },
  };
}
