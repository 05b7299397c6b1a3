/**
 * A linearizability checker: is there an order of the operations, each
 * taking effect at one instant between its invocation and its completion,
 * in which every output is what the model says? The search is Wing and
 * Gong's ("Testing and Verifying Concurrent Objects", 1993) with Lowe's
 * improvements ("Testing for linearizability", 2017): operations are
 * linearized in the order of a doubly linked list of call and return
 * events, and every (set of operations linearized, model state) reached is
 * remembered so that no configuration is explored twice. Histories are
 * split by the model's partition (P-compositionality: a key-value history
 * is linearizable if and only if each key's sub-history is), as Porcupine
 * does.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { Configurations } from './configurations.js';
import {
  assertKnownOptions,
  assertNonNegativeInteger,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';

/** One operation of a history. */
export interface Operation<I = unknown, O = unknown> {
  /** Who issued it (a client, a process); informational. */
  readonly client: number | string;
  readonly input: I;
  /**
   * What it returned; `undefined` for an operation whose outcome is unknown
   * (a timeout, a crash): it may have taken effect at any time after its
   * invocation, or never.
   */
  readonly output: O | undefined;
  /** When it was invoked (any monotonic unit: ms, ns, a line number). */
  readonly call: number;
  /** When it completed; `Infinity` when the outcome is unknown. */
  readonly return: number;
}

/** What the checker needs to know about the object under test. */
export interface Model<S, I, O> {
  /** The state before any operation. */
  init(): S;
  /**
   * Apply `input` to `state`: whether `output` is a possible answer, and
   * the state after. `output` is `undefined` for an operation of unknown
   * outcome (any answer goes).
   */
  step(state: S, input: I, output: O | undefined): { readonly ok: boolean; readonly state: S };
  /** Whether two states are the same (for the memo). */
  equal(a: S, b: S): boolean;
  /**
   * A string that equal states share, to spread configurations over the
   * search's table. Not needed when states are numbers, strings, booleans
   * or null (they are hashed as they are); for other states, without it
   * every state of one set of operations shares a bucket.
   */
  key?(state: S): string;
  /** Split a history into independent parts (by key); absent: one part. */
  partition?(operations: readonly Operation<I, O>[]): Operation<I, O>[][];
}

/** The verdict on a history. */
export type Verdict = 'linearizable' | 'not-linearizable' | 'unknown';

/** Options of {@link checkLinearizable}. */
export interface CheckOptions {
  /** Give up, with the verdict `unknown`, after this long. @default 10000 */
  readonly timeoutMs?: number;
  /**
   * After a `not-linearizable` verdict, how long to look for its
   * explanation (`minimalPrefix`, `culprit`), on top of `timeoutMs`; 0
   * skips it. The verdict never waits for the explanation.
   * @default 100
   */
  readonly explainMs?: number;
  /**
   * Give up, with the verdict `unknown` and `reason: 'memory'`, when the
   * search's table of configurations seen (its one structure that grows:
   * a bit set per configuration, and a reference to the model's state)
   * would grow past this many megabytes.
   * @default 512
   */
  readonly maxMemoryMb?: number;
}

/** What {@link checkLinearizable} found. */
export interface CheckResult {
  readonly verdict: Verdict;
  /** For `unknown`: the time budget ran out, or the memory budget. */
  readonly reason?: 'time' | 'memory';
  /** For `not-linearizable`: the operations of the first part that has no linearization. */
  readonly violating?: readonly Operation[];
  /**
   * For `not-linearizable`: the shortest prefix of that part (by time) that
   * already has no linearization: the operations invoked by the moment
   * `culprit` returned, those still running then counted as pending. When
   * the explanation budget (`explainMs`) allows finding it.
   */
  readonly minimalPrefix?: readonly Operation[];
  /** The operation whose return makes the history non-linearizable. */
  readonly culprit?: Operation;
}

const OPTIONS = new Set(['timeoutMs', 'explainMs', 'maxMemoryMb']);

/**
 * Check a history against a model.
 *
 * @example
 * ```ts
 * const { verdict } = checkLinearizable(registerModel, [
 *   { client: 1, input: { op: 'write', value: 1 }, output: null, call: 0, return: 10 },
 *   { client: 2, input: { op: 'read' }, output: 1, call: 5, return: 15 },
 * ]);
 * // 'linearizable'
 * ```
 */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  operations: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, OPTIONS);
  const timeoutMs = options.timeoutMs ?? 10_000;
  assertPositiveInteger('options.timeoutMs', timeoutMs);
  const explainMs = options.explainMs ?? 100;
  assertNonNegativeInteger('options.explainMs', explainMs);
  const maxMemoryMb = options.maxMemoryMb ?? 512;
  assertPositiveInteger('options.maxMemoryMb', maxMemoryMb);
  const memoryBytes = maxMemoryMb * 2 ** 20;
  if (!Array.isArray(operations)) {
    throw new InvalidArgumentError('operations', 'an array of operations', operations);
  }
  for (const [i, op] of operations.entries()) {
    const o = op as Partial<Operation> | null;
    if (
      typeof o !== 'object' ||
      o === null ||
      typeof o.call !== 'number' ||
      Number.isNaN(o.call) ||
      typeof o.return !== 'number' ||
      !(o.return >= o.call)
    ) {
      throw new InvalidArgumentError(`operations[${i}]`, 'an operation with call <= return', op);
    }
  }
  const deadline = performance.now() + timeoutMs;
  const all = operations as readonly Operation<I, O>[];
  const parts: Operation<I, O>[][] = model.partition?.(all) ?? [all.slice()];
  let reason: 'time' | 'memory' | undefined;
  for (const part of parts) {
    const verdict = checkPart(model, part, deadline, memoryBytes);
    if (verdict === 'not-linearizable') {
      const explanation =
        explainMs === 0
          ? {}
          : minimalPrefix(model, part, performance.now() + explainMs, memoryBytes);
      return { verdict, violating: part, ...explanation };
    }
    if (verdict === 'time' || verdict === 'memory') reason ??= verdict;
  }
  return reason === undefined ? { verdict: 'linearizable' } : { verdict: 'unknown', reason };
}

/**
 * The earliest return after which the part is already not linearizable
 * (binary search: a prefix of a non-linearizable history is extended by
 * every later event without becoming linearizable again). Operations still
 * running at that moment are pending: their outcome is unknown.
 */
function minimalPrefix<S, I, O>(
  model: Model<S, I, O>,
  part: readonly Operation<I, O>[],
  deadline: number,
  memoryBytes: number,
): { minimalPrefix?: readonly Operation[]; culprit?: Operation } {
  const returns = part
    .map((op) => op.return)
    .filter((time) => Number.isFinite(time))
    .sort((a, b) => a - b);
  const prefixAt = (time: number): Operation<I, O>[] =>
    part
      .filter((op) => op.call <= time)
      .map((op) => (op.return <= time ? op : { ...op, output: undefined, return: Infinity }));
  let low = 0;
  let high = returns.length - 1;
  while (low < high) {
    if (performance.now() > deadline) return {};
    const middle = (low + high) >> 1;
    if (checkPart(model, prefixAt(returns[middle]!), deadline, memoryBytes) === 'not-linearizable')
      high = middle;
    else low = middle + 1;
  }
  const time = returns[low];
  if (time === undefined) return {};
  const prefix = prefixAt(time);
  if (checkPart(model, prefix, deadline, memoryBytes) !== 'not-linearizable') return {};
  const culprit = part.find((op) => op.return === time);
  return {
    minimalPrefix: part.filter((op) => op.call <= time),
    ...(culprit !== undefined && { culprit: culprit }),
  };
}

/** A call or return event in the doubly linked list of the search. */
interface Entry {
  /** The operation's index in the part. */
  readonly id: number;
  readonly isCall: boolean;
  /** For a call: its return entry. */
  match: Entry | undefined;
  prev: Entry | undefined;
  next: Entry | undefined;
}

/** One part's verdict, or why there is none: `time` or `memory`. */
function checkPart<S, I, O>(
  model: Model<S, I, O>,
  operations: readonly Operation<I, O>[],
  deadline: number,
  memoryBytes: number,
): 'linearizable' | 'not-linearizable' | 'time' | 'memory' {
  const n = operations.length;
  if (n === 0) return 'linearizable';
  // Events in time order; at equal times calls first (they may overlap the returns).
  const events: { time: number; isCall: boolean; id: number }[] = [];
  operations.forEach((op, id) => {
    events.push({ time: op.call, isCall: true, id });
    events.push({ time: op.return, isCall: false, id });
  });
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1));
  const head: Entry = { id: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  const calls = new Map<number, Entry>();
  let last = head;
  for (const event of events) {
    const entry: Entry = {
      id: event.id,
      isCall: event.isCall,
      match: undefined,
      prev: last,
      next: undefined,
    };
    if (event.isCall) calls.set(event.id, entry);
    else (calls.get(event.id) as Entry).match = entry;
    last.next = entry;
    last = entry;
  }

  const words = Math.ceil(n / 32);
  const linearized = new Uint32Array(words);
  // Zobrist hashing: the set's hash is the XOR of its members' random words, kept as they come and go.
  const zobrist = new Uint32Array(n);
  let seed = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    seed = (seed ^ (seed << 13)) >>> 0;
    seed = (seed ^ (seed >>> 17)) >>> 0;
    seed = (seed ^ (seed << 5)) >>> 0;
    zobrist[i] = seed;
  }
  let setHash = 0;
  const seen = new Configurations<S>(words, (a, b) => model.equal(a, b), memoryBytes);
  // The choices made, as two parallel stacks (no object per step).
  const stackEntries: Entry[] = [];
  const stackStates: S[] = [];
  let state = model.init();
  let entry = head.next;
  let steps = 0;

  const lift = (call: Entry): void => {
    (call.prev as Entry).next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match as Entry;
    (ret.prev as Entry).next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: Entry): void => {
    const ret = call.match as Entry;
    (ret.prev as Entry).next = ret;
    if (ret.next) ret.next.prev = ret;
    (call.prev as Entry).next = call;
    if (call.next) call.next.prev = call;
  };

  while (head.next !== undefined) {
    if ((++steps & 0x3ff) === 0 && performance.now() > deadline) return 'time';
    const current = entry as Entry;
    if (current.isCall) {
      const op = operations[current.id] as Operation<I, O>;
      const result = model.step(state, op.input, op.output);
      if (result.ok) {
        const word = current.id >>> 5;
        const bit = 1 << (current.id & 31);
        linearized[word] = (linearized[word] as number) | bit;
        const nextHash = (setHash ^ (zobrist[current.id] as number)) >>> 0;
        const added = seen.add(
          (nextHash ^ stateHash(result.state, model)) >>> 0,
          linearized,
          result.state,
        );
        if (added === 'full') return 'memory';
        if (added === 'added') {
          stackEntries.push(current);
          stackStates.push(state);
          state = result.state;
          setHash = nextHash;
          lift(current);
          entry = head.next;
          continue;
        }
        linearized[word] = linearized[word] & ~bit;
      }
      entry = current.next;
    } else {
      // A return whose call is not linearized yet: undo the last choice.
      const top = stackEntries.pop();
      if (top === undefined) return 'not-linearizable';
      state = stackStates.pop() as S;
      setHash = (setHash ^ (zobrist[top.id] as number)) >>> 0;
      const word = top.id >>> 5;
      linearized[word] = (linearized[word] as number) & ~(1 << (top.id & 31));
      unlift(top);
      entry = top.next;
    }
  }
  return 'linearizable';
}

/** A hash of a model state: primitives as they are, anything else by the model's key. */
function stateHash<S>(state: S, model: Model<S, unknown, unknown>): number {
  switch (typeof state) {
    case 'number':
      return Number.isInteger(state)
        ? Math.imul((state as number) | 0, 0x9e3779b1) >>> 0
        : stringHash(String(state));
    case 'string':
      return stringHash(state);
    case 'boolean':
      return state ? 0x5bd1e995 : 0x1b873593;
    default:
      if (state === null || state === undefined) return 0;
      return model.key === undefined ? 0 : stringHash(model.key(state));
  }
}

/** FNV-1a over the string's UTF-16 units. */
function stringHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
