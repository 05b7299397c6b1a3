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
import {
  assertKnownOptions,
  assertOneOf,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';

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
  /**
   * Give up after this long: the result's `verdict` is then `unknown` (or
   * `anomalies` with those found so far).
   * @default 10000
   */
  readonly timeoutMs?: number;
}

/** What {@link checkTransactions} found. */
export interface TransactionCheckResult {
  /**
   * `valid`: the whole history was checked and no anomaly found;
   * `anomalies`: at least one found; `unknown`: the time budget ran out
   * before the check was complete and none was found so far.
   */
  readonly verdict: 'valid' | 'anomalies' | 'unknown';
  /** False when the time budget ran out: anomalies may be missing. */
  readonly complete: boolean;
  /** True when the verdict is `valid`. */
  readonly valid: boolean;
  readonly anomalies: readonly Anomaly[];
  /** Anomaly type to how many were found. */
  readonly counts: Readonly<Partial<Record<AnomalyType, number>>>;
}

const OPTIONS = new Set(['workload', 'realtime', 'timeoutMs']);

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

const EDGE_TYPES: readonly EdgeType[] = ['ww', 'wr', 'rw', 'rt'];

class Graph {
  readonly out: Edge[][];
  /** Per transaction, `to * 4 + type` of its edges: one edge per pair and type. */
  private readonly present: Set<number>[];
  constructor(size: number) {
    this.out = Array.from({ length: size }, () => []);
    this.present = Array.from({ length: size }, () => new Set<number>());
  }
  add(from: number, to: number, type: EdgeType, key?: string, value?: unknown): void {
    if (from === to) return;
    const code = to * 4 + EDGE_TYPES.indexOf(type);
    if (this.present[from]!.has(code)) return;
    this.present[from]!.add(code);
    this.out[from]!.push({
      to,
      type,
      ...(key !== undefined && { key }),
      ...(value !== undefined && { value }),
    });
  }
}

type EdgeFilter = (edge: Edge) => boolean;

/** The strongly connected components of a subgraph, in the order Tarjan's algorithm completes them (sinks first). */
interface Components {
  /** A node's component, as its completion index. */
  readonly of: (node: number) => number;
  readonly list: readonly (readonly number[])[];
}

/**
 * Strongly connected components of the subgraph over `nodes` and the edges
 * `allowed` accepts between them (Tarjan, iterative: linear in the
 * subgraph's size, whatever the size of the whole graph).
 */
function tarjan(graph: Graph, nodes: readonly number[], allowed: EdgeFilter): Components {
  const local = new Map<number, number>();
  nodes.forEach((node, at) => local.set(node, at));
  const size = nodes.length;
  const index = new Int32Array(size).fill(-1);
  const low = new Int32Array(size);
  const of = new Int32Array(size);
  const onStack = new Uint8Array(size);
  const stack: number[] = [];
  const list: number[][] = [];
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
        onStack[node] = 1;
      }
      const edges = graph.out[nodes[node]!]!;
      if (edge < edges.length) {
        frame[1] += 1;
        const next = local.get(edges[edge]!.to);
        if (next === undefined || !allowed(edges[edge]!)) continue;
        if (index[next] === -1) work.push([next, 0]);
        else if (onStack[next] === 1) low[node] = Math.min(low[node]!, index[next]!);
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
          onStack[member] = 0;
          of[member] = list.length;
          component.push(nodes[member]!);
        } while (member !== node);
        list.push(component);
      }
    }
  }
  return { of: (node) => of[local.get(node)!]!, list };
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

/**
 * A cycle through an edge of type `through` whose both ends lie in one
 * strongly connected component of the subgraph over `allowed` edges (every
 * such edge closes one: a path back exists inside the component), or none.
 * Linear in the component's size.
 */
function cycleThrough(
  graph: Graph,
  component: readonly number[],
  allowed: EdgeFilter,
  through: EdgeFilter,
): CycleStep[] | undefined {
  const parts = tarjan(graph, component, allowed);
  for (const part of parts.list) {
    if (part.length < 2) continue;
    const members = new Set(part);
    for (const node of part) {
      for (const edge of graph.out[node]!) {
        if (!members.has(edge.to) || !allowed(edge) || !through(edge)) continue;
        const back = path(graph, members, edge.to, node, allowed);
        if (back !== undefined) return [{ from: node, ...edge }, ...back];
      }
    }
  }
  return undefined;
}

/**
 * A cycle of one rw edge closed by a path over `allowed` edges (no rw), or
 * none; gives up (undefined) past `deadline`. An rw edge u → v closes one
 * only when v reaches u; the components of the `allowed` subgraph, in
 * completion order, rule out most edges without a search.
 */
function singleRwCycle(
  graph: Graph,
  component: readonly number[],
  allowed: EdgeFilter,
  deadline: number,
): CycleStep[] | undefined | 'timeout' {
  const parts = tarjan(graph, component, allowed);
  const members = new Set(component);
  for (const node of component) {
    for (const edge of graph.out[node]!) {
      if (edge.type !== 'rw' || !members.has(edge.to)) continue;
      // Tarjan completes a component only after every component it reaches.
      if (parts.of(node) > parts.of(edge.to)) continue;
      if (performance.now() > deadline) return 'timeout';
      const back = path(graph, members, edge.to, node, allowed);
      if (back !== undefined) return [{ from: node, ...edge }, ...back];
    }
  }
  return undefined;
}

const isWw: EdgeFilter = (edge) => edge.type === 'ww';
const isWwWr: EdgeFilter = (edge) => edge.type === 'ww' || edge.type === 'wr';
const isWr: EdgeFilter = (edge) => edge.type === 'wr';
const isRw: EdgeFilter = (edge) => edge.type === 'rw';
const notRt: EdgeFilter = (edge) => edge.type !== 'rt';
const orRt =
  (filter: EdgeFilter): EdgeFilter =>
  (edge) =>
    edge.type === 'rt' || filter(edge);

/**
 * The most specific cycle in a component: G0, then G1c, G-single, G2;
 * `-realtime` when rt edges are needed (every kind is tried without them
 * first, so a cycle found with them allowed uses one). `timeout` when the
 * budget ran out first.
 */
function classify(
  graph: Graph,
  component: readonly number[],
  deadline: number,
): { type: AnomalyType; cycle: CycleStep[] } | undefined | 'timeout' {
  for (const realtime of [false, true]) {
    const widen = (filter: EdgeFilter): EdgeFilter => (realtime ? orRt(filter) : filter);
    const suffix = realtime ? '-realtime' : '';
    const g0 = cycleThrough(graph, component, widen(isWw), () => true);
    if (g0 !== undefined) return { type: `G0${suffix}` as AnomalyType, cycle: g0 };
    const g1c = cycleThrough(graph, component, widen(isWwWr), isWr);
    if (g1c !== undefined) return { type: `G1c${suffix}` as AnomalyType, cycle: g1c };
    if (performance.now() > deadline) return 'timeout';
    const single = singleRwCycle(graph, component, widen(isWwWr), deadline);
    if (single === 'timeout') return single;
    if (single !== undefined) return { type: `G-single${suffix}` as AnomalyType, cycle: single };
    const g2 = cycleThrough(graph, component, realtime ? () => true : notRt, isRw);
    if (g2 !== undefined) return { type: `G2${suffix}` as AnomalyType, cycle: g2 };
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
  // Committed reads by key, in history order: [transaction, what it read].
  const reads = new Map<string, [number, unknown][]>();
  history.forEach((txn, index) => {
    if (txn.status !== 'ok') return;
    for (const op of txn.ops) {
      if (op.f !== 'r') continue;
      const ofKey = reads.get(op.key) ?? [];
      reads.set(op.key, ofKey);
      ofKey.push([index, op.value]);
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
    for (const [index, value] of reads.get(key) ?? []) {
      const list = Array.isArray(value) ? value : [];
      if (list.length > 0) {
        const source = writers[list.length - 1];
        if (source !== undefined) graph.add(source, index, 'wr', key, list[list.length - 1]);
      }
      const next = writers[list.length];
      if (next !== undefined) graph.add(index, next, 'rw', key, order[list.length]);
    }
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

function infer(
  history: readonly Transaction[],
  workload: TransactionCheckOptions['workload'],
  realtime: boolean,
): Inference {
  const inference =
    workload === 'list-append' ? inferListAppend(history) : inferRwRegister(history);
  if (realtime) addRealtime(inference.graph, history);
  return inference;
}

/**
 * The dependency edges inferred from a valid history (for tests that check
 * the cycle search against an exhaustive one; not part of the public API).
 */
export function dependencyEdges(
  history: readonly Transaction[],
  workload: TransactionCheckOptions['workload'],
  realtime: boolean,
): CycleStep[] {
  const { graph } = infer(history, workload, realtime);
  return graph.out.flatMap((edges, from) => edges.map((edge) => ({ from, ...edge })));
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
  const timeoutMs = options.timeoutMs ?? 10_000;
  assertPositiveInteger('options.timeoutMs', timeoutMs);
  const deadline = performance.now() + timeoutMs;
  validate(history);
  const { graph, anomalies } = infer(history, options.workload, options.realtime ?? true);
  const everyone = Array.from({ length: history.length }, (_, index) => index);
  let complete = true;
  for (const component of tarjan(graph, everyone, () => true).list) {
    if (component.length < 2) continue;
    const found = performance.now() > deadline ? 'timeout' : classify(graph, component, deadline);
    if (found === 'timeout') {
      complete = false;
      break;
    }
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
  const verdict = anomalies.length > 0 ? 'anomalies' : complete ? 'valid' : 'unknown';
  return { verdict, complete, valid: verdict === 'valid', anomalies, counts };
}
