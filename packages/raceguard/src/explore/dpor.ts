import type { ExecutionRecord } from './execution.js';
import { ANYTHING, dependent, type Footprint } from './footprint.js';
import { defaultChoice, type Decision, type Strategy } from './strategies.js';
import { schedules, strayedProof, type ScheduleSearch } from './systematic.js';

/**
 * The sleep set after `ran` ran: the tasks of `sources` (other than the one
 * that ran) whose step commutes with it, keeping their footprints.
 */
function stillAsleep(
  sources: readonly ReadonlyMap<number, Footprint>[],
  ranTask: number,
  ran: Footprint,
): Map<number, Footprint> {
  const sleep = new Map<number, Footprint>();
  for (const source of sources) {
    for (const [task, footprint] of source) {
      if (task !== ranTask && !dependent(footprint, ran)) sleep.set(task, footprint);
    }
  }
  return sleep;
}

/** One decision of the run being extended: what was ready, what ran, what is left to try. */
interface Node {
  readonly ready: readonly number[];
  chosen: number;
  /** Tasks explored from here, with the footprint their step had. */
  readonly done: Map<number, Footprint>;
  /** Tasks whose step from here is known to lead only to explored interleavings. */
  readonly sleep: ReadonlyMap<number, Footprint>;
  /** Tasks a race analysis asked to run from here. */
  readonly backtrack: Set<number>;
}

/**
 * Dynamic partial-order reduction with source sets (Abdulla et al., POPL
 * 2014) and sleep sets (Godefroid 1996): a depth-first search over schedules that
 * runs one schedule per class of equivalent ones. Two schedules are
 * equivalent when they differ only in the order of adjacent steps that
 * commute (different resources, or reads of the same one: see
 * {@link dependent}); after each run, every pair of steps of different tasks
 * that conflict and are not ordered through other steps marks the earlier
 * step's decision for the later task to run there instead. A task asleep at
 * a decision is not run from it: its step commutes with everything run since
 * a sibling schedule explored it.
 *
 * Stateless, like the rest of the explorer: each schedule is a fresh run
 * following a prefix of choices, so the search assumes a task's step from
 * the same prefix does the same thing (a run that strays from its prefix is
 * counted in {@link strayed}).
 */
export class PartialOrderSearch implements ScheduleSearch {
  private readonly nodes: Node[] = [];
  private prefix: number[] | undefined = [];
  private started = false;
  /** Runs whose choices strayed from the prefix they were given (non-determinism). */
  strayed = 0;

  private runs = 0;

  /** True when every class of schedules has been run, each run as it was given. */
  get exhausted(): boolean {
    return this.started && this.prefix === undefined && this.strayed === 0;
  }

  proof(): string {
    if (this.strayed > 0) return strayedProof(this.strayed, this.runs);
    if (!this.exhausted) return `not proved: ${schedules(this.runs)} run, more interleavings left`;
    return `every interleaving, up to the order of steps that commute: ${schedules(this.runs)}`;
  }

  /** The strategy of the next run, or undefined when the search is done. */
  next(): Strategy | undefined {
    if (this.prefix === undefined) return undefined;
    this.started = true;
    return this.strategy(this.prefix);
  }

  /** Learns from the run just made with the strategy {@link next} returned, and picks the next prefix. */
  expand(record: ExecutionRecord): void {
    this.runs += 1;
    const prefix = this.prefix ?? [];
    const { choices, readySets, footprints } = record;
    // The nodes of the prefix stay (pickNext cut the rest); a run that strayed
    // from its prefix keeps only the nodes before it strayed.
    const strayed = prefix.findIndex((task, index) => choices[index] !== task);
    if (strayed >= 0) {
      this.strayed += 1;
      const node = this.nodes[strayed];
      if (strayed === prefix.length - 1 && node !== undefined && strayed < choices.length) {
        // The task this run was to try there could not go: never ask for it
        // again; what ran instead is that node's child now.
        node.done.set(prefix[strayed]!, ANYTHING);
        node.chosen = choices[strayed]!;
        node.done.set(node.chosen, footprints[strayed]);
      } else this.nodes.length = Math.min(this.nodes.length, strayed);
    } else if (prefix.length > 0) {
      const node = this.nodes[prefix.length - 1]!;
      node.chosen = prefix[prefix.length - 1]!;
      node.done.set(node.chosen, footprints[prefix.length - 1]);
    }
    for (let index = this.nodes.length; index < choices.length; index += 1) {
      const chosen = choices[index]!;
      const sleep = index === 0 ? new Map<number, Footprint>() : this.childSleep(index - 1);
      this.nodes.push({
        ready: readySets[index]!,
        chosen,
        done: new Map([[chosen, footprints[index]]]),
        sleep,
        backtrack: new Set([chosen]),
      });
      if (sleep.has(chosen)) {
        // Every ready task was asleep: whatever follows was explored already.
        break;
      }
    }
    this.addBacktracks(record, this.nodes.length);
    this.prefix = this.pickNext();
  }

  /** The sleep set after the step chosen at `index`: sleepers and explored siblings it commutes with. */
  private childSleep(index: number): Map<number, Footprint> {
    const node = this.nodes[index]!;
    return stillAsleep([node.sleep, node.done], node.chosen, node.done.get(node.chosen));
  }

  /**
   * For every pair of conflicting steps of different tasks that no other
   * step orders, a task that can start the reversed order is tried at the
   * earlier step's decision (or, when none was ready there, every task that was).
   */
  private addBacktracks(record: ExecutionRecord, length: number): void {
    const { choices, footprints } = record;
    const tasks = Math.max(0, ...choices.slice(0, length).map((task) => task + 1));
    // clocks[j][t]: how many steps of task t happen before step j (step j's own included).
    const clocks: number[][] = [];
    const lastOf = new Map<number, number>();
    const counts = new Array<number>(tasks).fill(0);
    for (let j = 0; j < length; j += 1) {
      const task = choices[j]!;
      const previous = lastOf.get(task);
      const clock =
        previous === undefined ? new Array<number>(tasks).fill(0) : [...clocks[previous]!];
      // The conflicting earlier steps not already ordered before this one through others.
      const conflicts: number[] = [];
      for (let i = j - 1; i >= 0; i -= 1) {
        if (choices[i] === task || !dependent(footprints[i], footprints[j])) continue;
        const before = (clocks[i]![choices[i]!] ?? 0) <= (clock[choices[i]!] ?? 0);
        if (!before) conflicts.push(i);
        for (let t = 0; t < tasks; t += 1) clock[t] = Math.max(clock[t]!, clocks[i]![t]!);
      }
      counts[task] = counts[task]! + 1;
      clock[task] = counts[task]!;
      clocks.push(clock);
      lastOf.set(task, j);
      const happensBefore = (a: number, b: number): boolean =>
        (clocks[b]![choices[a]!] ?? 0) >= (clocks[a]![choices[a]!] ?? 0);
      for (const i of conflicts) {
        const node = this.nodes[i];
        if (node === undefined) continue;
        // Source sets (Abdulla et al., POPL 2014): to reverse the race, some
        // task must go first at i that starts what runs between i and j
        // independently of i, then j. Any such initial will do; one asleep
        // there is covered already. (Asking for j's own task, as the classic
        // algorithm does, loses the reversal when that task is asleep at i.)
        const between: number[] = [];
        for (let k = i + 1; k < j; k += 1) if (!happensBefore(i, k)) between.push(k);
        between.push(j);
        const initials = new Set<number>();
        between.forEach((k, at) => {
          if (!between.slice(0, at).some((earlier) => happensBefore(earlier, k)))
            initials.add(choices[k]!);
        });
        if ([...initials].some((t) => node.backtrack.has(t))) continue;
        const ready = [...initials].filter((t) => node.ready.includes(t));
        if (ready.length === 0) for (const other of node.ready) node.backtrack.add(other);
        else node.backtrack.add(ready.find((t) => !node.sleep.has(t)) ?? ready[0]!);
      }
    }
  }

  /** The deepest decision with a task left to try, as a prefix ending in that task. */
  private pickNext(): number[] | undefined {
    for (let index = this.nodes.length - 1; index >= 0; index -= 1) {
      const node = this.nodes[index]!;
      const candidates = [...node.backtrack]
        .filter((task) => !node.done.has(task) && !node.sleep.has(task))
        .sort((a, b) => a - b);
      const task = candidates[0];
      if (task === undefined) continue;
      this.nodes.length = index + 1;
      return [...this.nodes.slice(0, index).map((n) => n.chosen), task];
    }
    this.nodes.length = 0;
    return undefined;
  }

  /**
   * Follows `prefix`, then runs without preemption but never resumes a task
   * that is asleep while another is ready (the sleep sets are updated from
   * each step's footprint as the run goes).
   */
  private strategy(prefix: readonly number[]): Strategy {
    const parent = prefix.length > 0 ? this.nodes[prefix.length - 1] : undefined;
    let sleep = new Map<number, Footprint>(parent?.sleep);
    return {
      name: 'systematic',
      patient: true,
      pick(decision: Decision): number {
        const { step, current } = decision;
        if (step < prefix.length) return prefix[step]!;
        if (current !== undefined && !decision.retried) {
          // The previous step has run: keep asleep only what commutes with it
          // (right after the prefix, with the siblings explored before it).
          const sources =
            step === prefix.length && parent !== undefined ? [sleep, parent.done] : [sleep];
          sleep = stillAsleep(sources, current, decision.previousFootprint);
        }
        const awake = decision.ready.filter((ready) => !sleep.has(ready.task));
        return defaultChoice({ ...decision, ready: awake.length > 0 ? awake : decision.ready });
      },
    };
  }
}
