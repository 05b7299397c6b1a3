/**
 * Isolation anomalies in a transactional history, after Elle (Kingsbury and
 * Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
 * Observations", VLDB 2020) and Adya's anomaly classes. From what each
 * committed transaction read and wrote, infer the order of each key's
 * versions, then the dependencies between transactions: ww (wrote the next
 * version), wr (read what the other wrote), rw (read a version the other
 * overwrote) and, when times are given, rt (finished before the other
 * started). A cycle is an anomaly, named by its edges: only ww is G0; ww
 * and wr is G1c; exactly one rw is G-single (read skew); two or more rw is
 * G2 (write skew); a cycle that needs rt edges breaks strict
 * serializability only (`-realtime`). Non-cyclic anomalies are found
 * directly: aborted reads (G1a), intermediate reads (G1b), lost updates,
 * and reads of one key that no single order of versions explains.
 *
 * Two workloads: `list-append` (appends of unique values to lists; a read
 * returns the whole list, so each key's version order is known exactly) and
 * `rw-register` (writes of unique values; the order of versions is inferred
 * from transactions that read a version and then wrote the next).
 */
import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertOneOf, assertPlainObject } from '../core/validate.js';

/** One read, write or append inside a transaction. */
export type MicroOp =
  | { readonly f: 'r'; readonly key: string; readonly value: unknown }
  | { readonly f: 'w'; readonly key: string; readonly value: unknown }
  | { readonly f: 'append'; readonly key: string; readonly value: unknown };

/** A transaction as a client saw it. */
export interface Transaction {
  /** Who ran it; shown in explanations. */
  readonly process: number | string;
  /** `ok` committed, `fail` aborted (its writes never happened), `info` unknown outcome. */
  readonly status: 'ok' | 'fail' | 'info';
  /** Its micro-operations in order; reads carry what they returned (`null`/`[]` for nothing). */
  readonly ops: readonly MicroOp[];
  /** When it began and ended (any monotonic unit), for real-time edges; omit both to skip them. */
  readonly start?: number;
  readonly end?: number;
}

/** The dependency kinds between transactions. */
export type EdgeType = 'ww' | 'wr' | 'rw' | 'rt';

/** One edge of a cycle: `from` must come before `to`, and why. */
export interface CycleStep {
  readonly from: number;
  readonly to: number;
  readonly type: EdgeType;
  readonly key?: string;
  readonly value?: unknown;
}

/** The anomaly names reported. */
export type AnomalyType =
  | 'G0'
  | 'G1a'
  | 'G1b'
  | 'G1c'
  | 'G-single'
  | 'G2'
  | 'G0-realtime'
  | 'G1c-realtime'
  | 'G-single-realtime'
  | 'G2-realtime'
  | 'lost-update'
  | 'incompatible-order';

/** One anomaly, with the transactions involved (indexes into the history) and, for cycles, the cycle. */
export interface Anomaly {
  readonly type: AnomalyType;
  readonly transactions: readonly number[];
  readonly cycle?: readonly CycleStep[];
  /** The anomaly in words, naming transactions as `T<index>`. */
  readonly explanation: string;
}

/** Options of {@link checkTransactions}. */
export interface TransactionCheckOptions {
  readonly workload: 'list-append' | 'rw-register';
  /**
   * Add real-time edges (strict serializability) when transactions carry `start` and `end`.
   * @default true
   */
  readonly realtime?: boolean;
}

/** What {@link checkTransactions} found. */
export interface TransactionCheckResult {
  /** True when no anomaly was found. */
  readonly valid: boolean;
  readonly anomalies: readonly Anomaly[];
  /** Anomaly type to how many were found. */
  readonly counts: Readonly<Partial<Record<AnomalyType, number>>>;
}

const OPTIONS = new Set(['workload', 'realtime']);

interface Edge {
  readonly to: number;
  readonly type: EdgeType;
  readonly key?: string;
  readonly value?: unknown;
}

const keyOf = (value: unknown): string => JSON.stringify(value);

function validate(history: unknown): asserts history is readonly Transaction[] {
  if (!Array.isArray(history)) {
    throw new InvalidArgumentError('history', 'an array of transactions', history);
  }
  const list: readonly unknown[] = history;
  list.forEach((item, index) => {
    const at = `history[${index}]`;
    assertPlainObject(at, item);
    const txn = item as Partial<Record<keyof Transaction, unknown>>;
    assertOneOf(`${at}.status`, txn.status, ['ok', 'fail', 'info']);
    const ops = txn.ops;
    if (!Array.isArray(ops)) {
      throw new InvalidArgumentError(`${at}.ops`, 'an array of micro-operations', ops);
    }
    (ops as readonly unknown[]).forEach((op, position) => {
      assertPlainObject(`${at}.ops[${position}]`, op);
      const micro = op as Partial<Record<keyof MicroOp, unknown>>;
      assertOneOf(`${at}.ops[${position}].f`, micro.f, ['r', 'w', 'append']);
      if (typeof micro.key !== 'string') {
        throw new InvalidArgumentError(`${at}.ops[${position}].key`, 'a string', micro.key);
      }
    });
    if ((txn.start === undefined) !== (txn.end === undefined)) {
      throw new InvalidArgumentError(at, 'both start and end, or neither', item);
    }
  });
}

class Graph {
  readonly out: Edge[][];
  constructor(size: number) {
    this.out = Array.from({ length: size }, () => []);
  }
  add(from: number, to: number, type: EdgeType, key?: string, value?: unknown): void {
    if (from === to) return;
    const edges = this.out[from]!;
    if (edges.some((edge) => edge.to === to && edge.type === type)) return;
    edges.push({
      to,
      type,
      ...(key !== undefined && { key }),
      ...(value !== undefined && { value }),
    });
  }
}

/** Strongly connected components with more than one transaction (Tarjan, iterative). */
function components(graph: Graph): number[][] {
  const size = graph.out.length;
  const index = new Array<number>(size).fill(-1);
  const low = new Array<number>(size).fill(0);
  const onStack = new Array<boolean>(size).fill(false);
  const stack: number[] = [];
  const found: number[][] = [];
  let counter = 0;
  for (let root = 0; root < size; root += 1) {
    if (index[root] !== -1) continue;
    const work: [number, number][] = [[root, 0]];
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const [node, edge] = frame;
      if (edge === 0 && index[node] === -1) {
        index[node] = low[node] = counter++;
        stack.push(node);
        onStack[node] = true;
      }
      const edges = graph.out[node]!;
      if (edge < edges.length) {
        frame[1] += 1;
        const next = edges[edge]!.to;
        if (index[next] === -1) work.push([next, 0]);
        else if (onStack[next]) low[node] = Math.min(low[node]!, index[next]!);
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]![0];
        low[parent] = Math.min(low[parent]!, low[node]!);
      }
      if (low[node] === index[node]) {
        const component: number[] = [];
        let member: number;
        do {
          member = stack.pop()!;
          onStack[member] = false;
          component.push(member);
        } while (member !== node);
        if (component.length > 1) found.push(component);
      }
    }
  }
  return found;
}

/** Shortest path from `from` to `to` inside `members` using edges `allowed` accepts. */
function path(
  graph: Graph,
  members: ReadonlySet<number>,
  from: number,
  to: number,
  allowed: (edge: Edge) => boolean,
): CycleStep[] | undefined {
  const previous = new Map<number, CycleStep>();
  const queue = [from];
  const seen = new Set([from]);
  for (let head = 0; head < queue.length; head += 1) {
    const node = queue[head]!;
    for (const edge of graph.out[node]!) {
      if (!members.has(edge.to) || !allowed(edge) || seen.has(edge.to)) continue;
      seen.add(edge.to);
      previous.set(edge.to, { from: node, ...edge });
      if (edge.to === to) {
        const steps: CycleStep[] = [];
        for (let at = to; at !== from || steps.length === 0;) {
          const step = previous.get(at)!;
          steps.unshift(step);
          at = step.from;
          if (at === from) break;
        }
        return steps;
      }
      queue.push(edge.to);
    }
  }
  return undefined;
}

/** The most specific cycle in a component: G0, then G1c, G-single, G2; `-realtime` when rt edges are needed. */
function classify(
  graph: Graph,
  component: readonly number[],
): { type: AnomalyType; cycle: CycleStep[] } | undefined {
  const members = new Set(component);
  const attempts: [AnomalyType, boolean][] = [
    ['G0', false],
    ['G1c', false],
    ['G-single', false],
    ['G2', false],
    ['G0-realtime', true],
    ['G1c-realtime', true],
    ['G-single-realtime', true],
    ['G2-realtime', true],
  ];
  for (const [type, realtime] of attempts) {
    const base = type.replace('-realtime', '');
    const withRt = (edge: Edge): boolean =>
      (base === 'G0' ? edge.type === 'ww' : edge.type === 'ww' || edge.type === 'wr') ||
      (realtime && edge.type === 'rt');
    if (base === 'G0' || base === 'G1c') {
      for (const node of component) {
        for (const edge of graph.out[node]!) {
          if (!members.has(edge.to) || !withRt(edge)) continue;
          const back = path(graph, members, edge.to, node, withRt);
          if (back === undefined) continue;
          const cycle = [{ from: node, ...edge }, ...back];
          if (base === 'G1c' && !cycle.some((step) => step.type === 'wr')) continue;
          if (realtime && !cycle.some((step) => step.type === 'rt')) continue;
          return { type, cycle };
        }
      }
      continue;
    }
    // G-single: one rw edge closed by a path without rw; G2: closed by any path.
    for (const node of component) {
      for (const edge of graph.out[node]!) {
        if (edge.type !== 'rw' || !members.has(edge.to)) continue;
        const back = path(
          graph,
          members,
          edge.to,
          node,
          base === 'G-single' ? withRt : (e) => e.type !== 'rt' || realtime,
        );
        if (back === undefined) continue;
        const cycle = [{ from: node, ...edge }, ...back];
        if (realtime && !cycle.some((step) => step.type === 'rt')) continue;
        return { type, cycle };
      }
    }
  }
  return undefined;
}

const VERB: Record<EdgeType, string> = {
  ww: 'wrote a version that was overwritten by',
  wr: 'wrote what was read by',
  rw: 'read a version that was then overwritten by',
  rt: 'finished before the start of',
};

function describeCycle(cycle: readonly CycleStep[]): string {
  return cycle
    .map((step) => {
      const what =
        step.key === undefined
          ? ''
          : ` (${step.key}${step.value === undefined ? '' : ` = ${keyOf(step.value)}`})`;
      return `T${step.from} ${VERB[step.type]} T${step.to}${what}`;
    })
    .join('; ');
}

interface Inference {
  readonly graph: Graph;
  readonly anomalies: Anomaly[];
}

/** list-append: each key's longest read is its version order; every read must be a prefix of it. */
function inferListAppend(history: readonly Transaction[]): Inference {
  const graph = new Graph(history.length);
  const anomalies: Anomaly[] = [];
  const writer = new Map<string, Map<string, number>>(); // key -> element -> txn
  history.forEach((txn, index) => {
    for (const op of txn.ops) {
      if (op.f !== 'append') continue;
      const elements = writer.get(op.key) ?? new Map<string, number>();
      writer.set(op.key, elements);
      elements.set(keyOf(op.value), index);
    }
  });
  const longest = new Map<string, readonly unknown[]>();
  history.forEach((txn, index) => {
    if (txn.status !== 'ok') return;
    for (const op of txn.ops) {
      if (op.f !== 'r') continue;
      const list = Array.isArray(op.value) ? op.value : [];
      const known = longest.get(op.key) ?? [];
      const [short, long] = list.length <= known.length ? [list, known] : [known, list];
      if (!short.every((element, at) => keyOf(element) === keyOf(long[at]))) {
        anomalies.push({
          type: 'incompatible-order',
          transactions: [index],
          explanation: `T${index} read ${op.key} = ${keyOf(list)}, which is not a prefix of ${keyOf(known)} nor the other way round: no single order of appends explains both`,
        });
        continue;
      }
      if (list.length > known.length) longest.set(op.key, list);
    }
  });
  // G1a / G1b: reads of aborted or intermediate appends.
  history.forEach((txn, index) => {
    if (txn.status !== 'ok') return;
    for (const op of txn.ops) {
      if (op.f !== 'r' || !Array.isArray(op.value) || op.value.length === 0) continue;
      for (const element of op.value as unknown[]) {
        const source = writer.get(op.key)?.get(keyOf(element));
        if (source !== undefined && history[source]!.status === 'fail') {
          anomalies.push({
            type: 'G1a',
            transactions: [source, index],
            explanation: `T${index} read ${op.key} element ${keyOf(element)}, appended by T${source}, which aborted`,
          });
        }
      }
      const last = (op.value as unknown[])[op.value.length - 1];
      const source = writer.get(op.key)?.get(keyOf(last));
      if (source !== undefined && source !== index) {
        const own = history[source]!.ops.filter(
          (other) => other.f === 'append' && other.key === op.key,
        );
        const position = own.findIndex((other) => keyOf(other.value) === keyOf(last));
        if (position >= 0 && position < own.length - 1) {
          anomalies.push({
            type: 'G1b',
            transactions: [source, index],
            explanation: `T${index} read ${op.key} ending at ${keyOf(last)}, an intermediate state of T${source}, which appended ${keyOf(own[own.length - 1]!.value)} after it`,
          });
        }
      }
    }
  });
  for (const [key, elements] of writer) {
    const order = longest.get(key) ?? [];
    const writers: (number | undefined)[] = order.map((element) => elements.get(keyOf(element)));
    // Appends no read saw come after the longest read (lists only grow). When they were all
    // made by one transaction that did not abort, it installed the next version.
    const seen = new Set(order.map(keyOf));
    const unseen = new Set<number>();
    for (const [element, index] of elements) {
      if (!seen.has(element) && history[index]!.status !== 'fail') unseen.add(index);
    }
    if (unseen.size === 1) writers.push([...unseen][0]);
    for (let at = 1; at < writers.length; at += 1) {
      const before = writers[at - 1];
      const after = writers[at];
      if (before !== undefined && after !== undefined)
        graph.add(before, after, 'ww', key, order[at]);
    }
    history.forEach((txn, index) => {
      if (txn.status !== 'ok') return;
      for (const op of txn.ops) {
        if (op.f !== 'r' || op.key !== key) continue;
        const list = Array.isArray(op.value) ? op.value : [];
        if (list.length > 0) {
          const source = writers[list.length - 1];
          if (source !== undefined) graph.add(source, index, 'wr', key, list[list.length - 1]);
        }
        const next = writers[list.length];
        if (next !== undefined) graph.add(index, next, 'rw', key, order[list.length]);
      }
    });
  }
  return { graph, anomalies };
}

/** rw-register: versions ordered by transactions that read one version, then wrote the next. */
function inferRwRegister(history: readonly Transaction[]): Inference {
  const graph = new Graph(history.length);
  const anomalies: Anomaly[] = [];
  const writer = new Map<string, Map<string, number>>(); // key -> value -> txn (its final write of the key)
  const intermediate = new Map<string, Map<string, number>>();
  history.forEach((txn, index) => {
    const last = new Map<string, unknown>();
    for (const op of txn.ops) {
      if (op.f !== 'w') continue;
      const previous = last.get(op.key);
      if (last.has(op.key)) {
        const map = intermediate.get(op.key) ?? new Map<string, number>();
        intermediate.set(op.key, map);
        map.set(keyOf(previous), index);
      }
      last.set(op.key, op.value);
    }
    for (const [key, value] of last) {
      const values = writer.get(key) ?? new Map<string, number>();
      writer.set(key, values);
      values.set(keyOf(value), index);
    }
  });
  // next[key][version] = the transactions that read `version` (their first read of the key) and then wrote the key.
  const successors = new Map<string, Map<string, number[]>>();
  history.forEach((txn, index) => {
    if (txn.status === 'fail') return;
    const firstRead = new Map<string, unknown>();
    const wrote = new Set<string>();
    for (const op of txn.ops) {
      if (op.f === 'r' && !firstRead.has(op.key) && !wrote.has(op.key))
        firstRead.set(op.key, op.value);
      if (op.f === 'w') wrote.add(op.key);
    }
    for (const [key, value] of firstRead) {
      if (!wrote.has(key)) continue;
      const map = successors.get(key) ?? new Map<string, number[]>();
      successors.set(key, map);
      const list = map.get(keyOf(value ?? null)) ?? [];
      list.push(index);
      map.set(keyOf(value ?? null), list);
    }
  });
  for (const [key, map] of successors) {
    for (const [version, txns] of map) {
      const committed = txns.filter((index) => history[index]!.status === 'ok');
      if (committed.length > 1) {
        anomalies.push({
          type: 'lost-update',
          transactions: committed,
          explanation: `${committed.map((index) => `T${index}`).join(', ')} each read ${key} = ${version} and wrote ${key}: all but one of their updates is lost`,
        });
      }
      const source = version === 'null' ? undefined : writer.get(key)?.get(version);
      for (const index of txns)
        if (source !== undefined) graph.add(source, index, 'ww', key, JSON.parse(version));
    }
  }
  history.forEach((txn, index) => {
    if (txn.status !== 'ok') return;
    const wrote = new Set<string>();
    for (const op of txn.ops) {
      if (op.f === 'w') {
        wrote.add(op.key);
        continue;
      }
      if (op.f !== 'r' || wrote.has(op.key)) continue;
      const version = keyOf(op.value ?? null);
      const source =
        op.value === null || op.value === undefined ? undefined : writer.get(op.key)?.get(version);
      const middle = intermediate.get(op.key)?.get(version);
      if (middle !== undefined && middle !== index) {
        anomalies.push({
          type: 'G1b',
          transactions: [middle, index],
          explanation: `T${index} read ${op.key} = ${version}, which T${middle} overwrote before it committed`,
        });
      }
      if (source !== undefined) {
        if (history[source]!.status === 'fail') {
          anomalies.push({
            type: 'G1a',
            transactions: [source, index],
            explanation: `T${index} read ${op.key} = ${version}, written by T${source}, which aborted`,
          });
        }
        graph.add(source, index, 'wr', op.key, op.value);
      }
      for (const next of successors.get(op.key)?.get(version) ?? []) {
        if (history[next]!.status !== 'fail') graph.add(index, next, 'rw', op.key, op.value);
      }
    }
  });
  return { graph, anomalies };
}

/** Real-time edges, transitively reduced: from each transaction to those that began after it ended. */
function addRealtime(graph: Graph, history: readonly Transaction[]): void {
  const events: { time: number; kind: 0 | 1; index: number }[] = [];
  history.forEach((txn, index) => {
    if (txn.status !== 'ok' || txn.start === undefined || txn.end === undefined) return;
    events.push({ time: txn.start, kind: 1, index }, { time: txn.end, kind: 0, index });
  });
  // Ends sort after starts at the same instant: only a strictly earlier end orders two transactions.
  events.sort((a, b) => a.time - b.time || b.kind - a.kind);
  let frontier = new Set<number>();
  const seenAtStart = new Map<number, Set<number>>();
  for (const event of events) {
    if (event.kind === 1) {
      for (const before of frontier) graph.add(before, event.index, 'rt');
      seenAtStart.set(event.index, new Set(frontier));
    } else {
      const covered = seenAtStart.get(event.index) ?? new Set<number>();
      frontier = new Set([...frontier].filter((member) => !covered.has(member)));
      frontier.add(event.index);
    }
  }
}

/**
 * Finds isolation anomalies in a transactional history.
 *
 * @example
 * ```ts
 * const { valid, anomalies } = checkTransactions(
 *   [
 *     { process: 1, status: 'ok', ops: [{ f: 'r', key: 'x', value: [] }, { f: 'append', key: 'y', value: 1 }] },
 *     { process: 2, status: 'ok', ops: [{ f: 'r', key: 'y', value: [] }, { f: 'append', key: 'x', value: 2 }] },
 *     { process: 3, status: 'ok', ops: [{ f: 'r', key: 'x', value: [2] }, { f: 'r', key: 'y', value: [1] }] },
 *   ],
 *   { workload: 'list-append' },
 * );
 * // valid === false; anomalies[0].type === 'G2' (write skew: each read what the other then changed)
 * ```
 */
export function checkTransactions(
  history: readonly Transaction[],
  options: TransactionCheckOptions,
): TransactionCheckResult {
  assertPlainObject('options', options);
  assertKnownOptions('options', options, OPTIONS);
  assertOneOf('options.workload', options.workload, ['list-append', 'rw-register']);
  if (options.realtime !== undefined && typeof options.realtime !== 'boolean') {
    throw new InvalidArgumentError('options.realtime', 'a boolean', options.realtime);
  }
  validate(history);
  const { graph, anomalies } =
    options.workload === 'list-append' ? inferListAppend(history) : inferRwRegister(history);
  if (options.realtime ?? true) addRealtime(graph, history);
  for (const component of components(graph)) {
    const found = classify(graph, component);
    if (found === undefined) continue;
    anomalies.push({
      type: found.type,
      transactions: [...new Set(found.cycle.map((step) => step.from))],
      cycle: found.cycle,
      explanation: describeCycle(found.cycle),
    });
  }
  const counts: Partial<Record<AnomalyType, number>> = {};
  for (const anomaly of anomalies) counts[anomaly.type] = (counts[anomaly.type] ?? 0) + 1;
  return { valid: anomalies.length === 0, anomalies, counts };
}
