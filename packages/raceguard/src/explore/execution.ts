import { AsyncLocalStorage } from 'node:async_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DeadlockError, StepTimeoutError, type TraceStep } from './errors.js';
import { ANYTHING, NOTHING, union, type Footprint } from './footprint.js';
import { ioQuiet, type IoBaseline } from './quiet.js';
import { defaultChoice, type ReadyTask, type Strategy } from './strategies.js';

/** A place where a task waits for the scheduler. */
interface Waiting {
  readonly label: string;
  /** What the call that just returned did, or what the code after a point touches. */
  readonly footprint: Footprint;
  /** `call`: the footprint is the call's, done before the task parked. */
  readonly kind: 'start' | 'call' | 'point';
  /** Virtual time at which a sleep ends; undefined for every other point. */
  readonly wakeAtMs: number | undefined;
  readonly resume: () => void;
}

interface Task {
  readonly index: number;
  readonly name: string;
  /** Intercepted calls in flight. */
  inFlight: number;
  readonly waiting: Waiting[];
  done: boolean;
  lastLabel: string;
  /** The step it runs now, until it parks or ends. */
  open: number | undefined;
  /** Its latest step. */
  last: number | undefined;
}

interface Scope {
  readonly execution: Execution;
  readonly task: Task;
}

const scopes = new AsyncLocalStorage<Scope>();

/**
 * How long a search following a prefix waits for the task it asks for: that
 * task was ready there before, so only a reply slower than any seen in
 * practice, or a server that decides differently this time (which waiter a
 * released row lock goes to), keeps it away; then the run strays.
 */
const PATIENT_MS = 1000;

/** Timing knobs of one run. */
export interface ExecutionTiming {
  readonly stepTimeoutMs: number;
  readonly deadlockMs: number;
  /** What kept the event loop alive before the first run; undefined: always wait `deadlockMs`. */
  readonly io: IoBaseline | undefined;
}

/**
 * How long live tasks with nothing parked are given when the process has no
 * I/O left that could wake them (see quiet.ts): a margin for a timer the
 * baseline hides, not for a reply.
 */
const QUIET_DEADLOCK_MS = 10;

/** What one run did: its choices (for replay and search), the trace, and how it ended. */
export interface ExecutionRecord {
  /** The task chosen at each step. */
  readonly choices: readonly number[];
  /** The ready tasks at each step. */
  readonly readySets: readonly (readonly number[])[];
  /** The task that ran the step before each decision. */
  readonly currents: readonly (number | undefined)[];
  /** What each step touched (see footprint.ts); `undefined` for anything. */
  readonly footprints: readonly Footprint[];
  /** Tasks that had not finished when the run ended (a deadlock's, or a hung one's). */
  readonly unfinished: ReadonlySet<number>;
  readonly trace: readonly TraceStep[];
  readonly preemptions: number;
}

/**
 * One run of a program under a strategy. Tasks run inside an async context
 * that names them; every point (explicit, an intercepted call returning, a
 * sleep) parks the task until the scheduler resumes it. The scheduler decides
 * only when every live task is parked, finished, or blocked on something only
 * another task can release; a call still in flight is waited for, except that
 * one slower than a few times the usual call is taken as blocked (a row lock
 * held by a parked task) while other tasks are ready.
 */
export class Execution {
  private readonly tasks: Task[] = [];
  private readonly choices: number[] = [];
  private readonly readySets: number[][] = [];
  private readonly currents: (number | undefined)[] = [];
  private readonly footprints: Footprint[] = [];
  private readonly trace: TraceStep[] = [];
  private preemptions = 0;
  private current: number | undefined;
  private virtualNowMs = 0;
  private wake: () => void = () => {};
  private event: Promise<void>;
  private stopped = false;
  /** Latencies of the last intercepted calls, ms (a ring). */
  private readonly latencies: number[] = [];
  private latencyAt = 0;

  constructor(
    private readonly strategy: Strategy,
    private readonly timing: ExecutionTiming,
  ) {
    this.event = this.newEvent();
  }

  /** The task running the caller, if it belongs to this run. */
  static scope(): Scope | undefined {
    return scopes.getStore();
  }

  get nowMs(): number {
    return this.virtualNowMs;
  }

  /** Starts `fn` as a task that first waits to be scheduled (for a timer: until its deadline). */
  spawn<T>(name: string, fn: () => Promise<T> | T, delayMs?: number): Promise<T> {
    const task: Task = {
      index: this.tasks.length,
      name,
      inFlight: 0,
      waiting: [],
      done: false,
      lastLabel: 'start',
      open: undefined,
      last: undefined,
    };
    this.tasks.push(task);
    const run = async (): Promise<T> => {
      try {
        // A timer's deadline counts from when it was set, not from when its task first runs.
        // A timer's turn depends on the virtual clock every sleep moves: it touches anything.
        if (delayMs === undefined) await this.park(task, 'start', NOTHING, 'start', undefined);
        else
          await this.park(
            task,
            `timer ${delayMs} ms`,
            ANYTHING,
            'point',
            this.virtualNowMs + delayMs,
          );
        return await fn();
      } finally {
        task.done = true;
        task.open = undefined;
        this.notify();
      }
    };
    return scopes.run({ execution: this, task }, run);
  }

  /** Parks the calling task until the scheduler resumes it; outside a task, returns at once. */
  point(label: string, footprint: Footprint, sleepMs?: number): Promise<void> {
    const scope = scopes.getStore();
    if (scope === undefined || scope.execution !== this || this.stopped) return Promise.resolve();
    const wakeAtMs = sleepMs === undefined ? undefined : this.virtualNowMs + sleepMs;
    return this.park(scope.task, label, footprint, 'point', wakeAtMs);
  }

  /**
   * Runs an intercepted call: outside a task it is just called; inside, the
   * task parks when the call has settled, so the scheduler decides when the
   * caller sees the result.
   */
  async call<T>(label: string, footprint: Footprint, invoke: () => Promise<T> | T): Promise<T> {
    const scope = scopes.getStore();
    if (scope === undefined || scope.execution !== this || this.stopped) return invoke();
    const { task } = scope;
    task.inFlight += 1;
    const started = performance.now();
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await invoke() };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      task.inFlight -= 1;
      this.latencies[this.latencyAt] = performance.now() - started;
      this.latencyAt = (this.latencyAt + 1) % 32;
    }
    await this.park(task, outcome.ok ? label : `${label} (threw)`, footprint, 'call', undefined);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /**
   * Schedules until `done` settles, then lets leftover tasks finish without
   * preemption. Rejects with a deadlock or step-timeout error when no task
   * can go on.
   */
  async schedule(done: Promise<unknown>): Promise<void> {
    let finished = false;
    const settled = done.then(
      () => {
        finished = true;
        this.notify();
      },
      () => {
        finished = true;
        this.notify();
      },
    );
    try {
      for (;;) {
        const outcome = await this.settle(finished);
        if (outcome === 'finished') return;
        if (outcome === 'idle') {
          if (finished) return;
          await this.event;
          continue;
        }
        await this.decide(finished);
      }
    } finally {
      this.stopped = true;
      void settled;
    }
  }

  /** Records a failure nobody awaits (a timer's callback); the run fails with the first. */
  reportError(error: unknown): void {
    if (this.unawaitedError === undefined) this.unawaitedError = { error };
  }

  /** The first failure reported with {@link reportError}. */
  unawaitedError: { readonly error: unknown } | undefined;

  /** The record of this run so far. */
  record(): ExecutionRecord {
    return {
      choices: this.choices,
      readySets: this.readySets,
      currents: this.currents,
      footprints: this.footprints,
      unfinished: new Set(this.tasks.filter((task) => !task.done).map((task) => task.index)),
      trace: this.trace,
      preemptions: this.preemptions,
    };
  }

  private park(
    task: Task,
    label: string,
    footprint: Footprint,
    kind: Waiting['kind'],
    wakeAtMs: number | undefined,
  ): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (task.open !== undefined) {
      // The step ends here: it touched what the call did, or what the code before the point did.
      this.footprints[task.open] = union(this.footprints[task.open], footprint);
      task.open = undefined;
    } else if (task.last !== undefined) {
      // A second wait of one task (Promise.all inside it): its steps no longer tell apart.
      this.footprints[task.last] = ANYTHING;
    }
    return new Promise<void>((resume) => {
      task.waiting.push({ label, footprint, kind, wakeAtMs, resume });
      this.notify();
    });
  }

  private newEvent(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.event = this.newEvent();
    wake();
  }

  private waitEvent(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.event.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** Waits until a decision can be made: 'decide', nothing live: 'idle', or after `finished` with all done. */
  private async settle(finished: boolean): Promise<'decide' | 'idle' | 'finished'> {
    for (;;) {
      await nextTurn(); // every continuation already queued runs first
      const live = this.tasks.filter((task) => !task.done);
      if (live.length === 0) return finished ? 'finished' : 'idle';
      const ready = live.some((task) => task.waiting.length > 0);
      const inFlight = live.filter((task) => task.inFlight > 0);
      if (inFlight.length === 0) {
        if (ready) return 'decide';
        // Live tasks, none parked and no call in flight: each awaits something
        // only another task could give. Wait briefly for unintercepted I/O,
        // hardly at all when there is none.
        const wait =
          this.timing.io !== undefined && ioQuiet(this.timing.io)
            ? Math.min(QUIET_DEADLOCK_MS, this.timing.deadlockMs)
            : this.timing.deadlockMs;
        if (await this.waitEvent(wait)) continue;
        if (finished) return 'finished';
        throw new DeadlockError(
          live.map((task) => ({ name: task.name, lastLabel: task.lastLabel })),
          wait,
        );
      }
      if (ready) {
        if (await this.waitEvent(this.blockedAfterMs())) continue;
        return 'decide';
      }
      if (await this.waitEvent(this.timing.stepTimeoutMs)) continue;
      if (finished) return 'finished';
      throw new StepTimeoutError(
        inFlight.map((task) => `${task.name} after ${task.lastLabel}`),
        this.timing.stepTimeoutMs,
      );
    }
  }

  private readyTasks(): ReadyTask[] {
    let earliestWake = Number.POSITIVE_INFINITY;
    for (const task of this.tasks) {
      for (const waiting of task.waiting) {
        if (waiting.wakeAtMs !== undefined) earliestWake = Math.min(earliestWake, waiting.wakeAtMs);
      }
    }
    const ready: ReadyTask[] = [];
    for (const task of this.tasks) {
      // A sleep is ready only when no other sleep ends earlier: timers keep their order.
      const first = task.waiting.find(
        (waiting) => waiting.wakeAtMs === undefined || waiting.wakeAtMs <= earliestWake,
      );
      if (first !== undefined)
        ready.push({
          task: task.index,
          label: first.label,
          resource: first.footprint?.[0]?.resource,
          footprint: first.footprint,
        });
    }
    return ready;
  }

  /**
   * How long a call may take before it counts as blocked while other tasks
   * are ready: 20 times the median of the recent calls (a median, so that
   * the blocked calls themselves do not raise it), between 5 and 250 ms.
   */
  private blockedAfterMs(): number {
    if (this.latencies.length === 0) return 10;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1]!;
    return Math.min(250, Math.max(5, median * 20));
  }

  private async decide(finished: boolean): Promise<void> {
    let ready = this.readyTasks();
    if (ready.length === 0) return;
    const step = this.choices.length;
    const isReady = (task: number): boolean => ready.some((candidate) => candidate.task === task);
    // A step still running at a decision (its call blocked, or awaiting another
    // task) does its work among later steps: it may touch anything.
    for (const task of this.tasks) {
      if (task.open !== undefined && !task.done) {
        this.footprints[task.open] = ANYTHING;
        task.open = undefined;
      }
    }
    const previousFootprint = step === 0 ? NOTHING : this.footprints[step - 1];
    const decision = { step, ready, current: this.current, retried: false, previousFootprint };
    let chosen = finished ? defaultChoice(decision) : this.strategy.pick(decision);
    if (!isReady(chosen)) {
      // The strategy follows a recorded schedule whose task is not parked yet
      // (its call is slower this time): wait for it, then ask again.
      const patienceMs =
        this.strategy.strict === true
          ? this.timing.stepTimeoutMs
          : this.strategy.patient === true
            ? Math.min(this.timing.stepTimeoutMs, PATIENT_MS)
            : this.blockedAfterMs();
      const deadline = performance.now() + patienceMs;
      while (!isReady(chosen) && this.tasks[chosen]?.done !== true) {
        const leftMs = deadline - performance.now();
        if (leftMs <= 0 || !(await this.waitEvent(leftMs))) break;
        await nextTurn();
        ready = this.readyTasks();
      }
      ready = this.readyTasks();
      if (ready.length === 0) return;
      const again = { ...decision, ready, retried: true };
      if (!isReady(chosen)) chosen = this.strategy.pick(again);
      if (!isReady(chosen)) chosen = defaultChoice(again);
    }
    this.grant(chosen, ready);
  }

  private grant(chosen: number, ready: readonly ReadyTask[]): void {
    const task = this.tasks[chosen]!;
    const ready_ = ready.find((candidate) => candidate.task === chosen)!;
    const position = task.waiting.findIndex((waiting) => waiting.label === ready_.label);
    const [waiting] = task.waiting.splice(position, 1);
    const preemption =
      this.current !== undefined &&
      this.current !== chosen &&
      ready.some((candidate) => candidate.task === this.current);
    if (preemption) this.preemptions += 1;
    this.choices.push(chosen);
    this.readySets.push(ready.map((candidate) => candidate.task));
    this.currents.push(this.current);
    // The step touches what the code after a point does (its end adds the rest);
    // a task with another wait pending, or a call in flight, runs two things at once.
    this.footprints.push(
      task.waiting.length > 0 || task.inFlight > 0
        ? ANYTHING
        : waiting!.kind === 'point'
          ? waiting!.footprint
          : NOTHING,
    );
    task.open = this.footprints.length - 1;
    task.last = task.open;
    this.trace.push({ task: chosen, taskName: task.name, label: waiting!.label, preemption });
    if (waiting!.wakeAtMs !== undefined)
      this.virtualNowMs = Math.max(this.virtualNowMs, waiting!.wakeAtMs);
    task.lastLabel = waiting!.label;
    this.current = chosen;
    waiting!.resume();
  }
}
