/**
 * The transaction checker's cycle search against an exhaustive one. Random
 * small histories (list-append and rw-register, real-time edges or not) from
 * a printed seed (`RACEGUARD_CYCLES_SEED`; `RACEGUARD_CYCLES_HISTORIES` for
 * more): every simple cycle of the inferred dependency graph is enumerated,
 * each strongly connected component's most specific anomaly is derived from
 * them, and `checkTransactions` must report exactly those, each with a cycle
 * that exists in the graph and fits its name. Then the budget: a cycle
 * through 10,001 transactions is found well within it, and a budget too
 * small for a history says `unknown` instead of overrunning it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkTransactions,
  type AnomalyType,
  type CycleStep,
  type MicroOp,
  type Transaction,
} from '../../packages/raceguard/src/check/index.js';
import { dependencyEdges } from '../../packages/raceguard/src/check/anomalies.js';
import { createRandom, type Random } from '../../packages/raceguard/src/explore/random.js';
import { staleReadChain } from '../helpers/transactions.js';

const r = (key: string, value: unknown): MicroOp => ({ f: 'r', key, value });
const a = (key: string, value: unknown): MicroOp => ({ f: 'append', key, value });

const SEED = Number(process.env.RACEGUARD_CYCLES_SEED ?? Math.floor(Math.random() * 2 ** 31));
const HISTORIES = Number(process.env.RACEGUARD_CYCLES_HISTORIES ?? 600);

type Workload = 'list-append' | 'rw-register';

function randomHistory(rng: Random, workload: Workload): Transaction[] {
  const size = 2 + rng.int(5);
  const keys = ['x', 'y', 'z'].slice(0, 1 + rng.int(3));
  let fresh = 1;
  // First the writes and where the reads go; then each key's writes in an
  // order of their own (not the transactions'), and reads filled from it:
  // a list-append read is a prefix of that order, a register read any value.
  const plans: { key: string; write: number | undefined }[][] = [];
  const written = new Map<string, number[]>(keys.map((key) => [key, []]));
  for (let index = 0; index < size; index += 1) {
    const plan: { key: string; write: number | undefined }[] = [];
    for (let count = 1 + rng.int(3); count > 0; count -= 1) {
      const key = keys[rng.int(keys.length)]!;
      const write = rng.next() < 0.5 ? fresh++ : undefined;
      if (write !== undefined) written.get(key)!.push(write);
      plan.push({ key, write });
    }
    plans.push(plan);
  }
  for (const values of written.values()) {
    for (let at = values.length - 1; at > 0; at -= 1) {
      const other = rng.int(at + 1);
      [values[at], values[other]] = [values[other]!, values[at]!];
    }
  }
  return plans.map((plan, index) => {
    const ops: MicroOp[] = plan.map(({ key, write }) => {
      const values = written.get(key)!;
      if (write !== undefined)
        return { f: workload === 'list-append' ? 'append' : 'w', key, value: write };
      if (workload === 'list-append')
        return { f: 'r', key, value: values.slice(0, rng.int(values.length + 1)) };
      const pick = rng.int(values.length + 1);
      return { f: 'r', key, value: pick === values.length ? null : values[pick]! };
    });
    const start = rng.int(20);
    return {
      process: index,
      status: rng.next() < 0.9 ? 'ok' : 'fail',
      ops,
      start,
      end: start + 1 + rng.int(6),
    } satisfies Transaction;
  });
}

const CYCLIC: readonly AnomalyType[] = [
  'G0',
  'G1c',
  'G-single',
  'G2',
  'G0-realtime',
  'G1c-realtime',
  'G-single-realtime',
  'G2-realtime',
];

/** The most specific name a cycle of these edge types can have, in the checker's order. */
function nameOf(types: readonly CycleStep['type'][]): AnomalyType {
  const count = (type: CycleStep['type']) => types.filter((t) => t === type).length;
  const suffix = count('rt') > 0 ? '-realtime' : '';
  if (count('wr') === 0 && count('rw') === 0) return `G0${suffix}` as AnomalyType;
  if (count('rw') === 0) return `G1c${suffix}` as AnomalyType;
  if (count('rw') === 1) return `G-single${suffix}` as AnomalyType;
  return `G2${suffix}` as AnomalyType;
}

/** Every simple cycle (as its edges), by depth-first search from each smallest node. */
function simpleCycles(edges: readonly CycleStep[], nodes: number): CycleStep[][] {
  const out = Array.from({ length: nodes }, () => [] as CycleStep[]);
  for (const edge of edges) out[edge.from]!.push(edge);
  const cycles: CycleStep[][] = [];
  for (let start = 0; start < nodes; start += 1) {
    const walk = (node: number, trail: CycleStep[], seen: Set<number>) => {
      for (const edge of out[node]!) {
        if (edge.to === start) cycles.push([...trail, edge]);
        else if (edge.to > start && !seen.has(edge.to)) {
          seen.add(edge.to);
          walk(edge.to, [...trail, edge], seen);
          seen.delete(edge.to);
        }
      }
    };
    walk(start, [], new Set([start]));
  }
  return cycles;
}

/** Per strongly connected component (its smallest member), the most specific anomaly among its cycles. */
function expectedAnomalies(edges: readonly CycleStep[], nodes: number): Map<number, AnomalyType> {
  const reach = Array.from({ length: nodes }, (_, from) =>
    Array.from({ length: nodes }, (_, to) => from === to),
  );
  for (const edge of edges) reach[edge.from]![edge.to] = true;
  for (let via = 0; via < nodes; via += 1)
    for (let from = 0; from < nodes; from += 1)
      for (let to = 0; to < nodes; to += 1)
        if (reach[from]![via] && reach[via]![to]) reach[from]![to] = true;
  const componentOf = (node: number) => {
    for (let other = 0; other < nodes; other += 1)
      if (reach[node]![other] && reach[other]![node]) return other; // the smallest member
    return node;
  };
  const best = new Map<number, AnomalyType>();
  for (const cycle of simpleCycles(edges, nodes)) {
    const component = componentOf(cycle[0]!.from);
    const name = nameOf(cycle.map((step) => step.type));
    const known = best.get(component);
    if (known === undefined || CYCLIC.indexOf(name) < CYCLIC.indexOf(known))
      best.set(component, name);
  }
  return best;
}

/** Checks one history against the exhaustive search; returns the anomalies expected per component. */
function compare(
  history: readonly Transaction[],
  workload: Workload,
  realtime: boolean,
  where: string,
): Map<number, AnomalyType> {
  const edges = dependencyEdges(history, workload, realtime);
  const expected = expectedAnomalies(edges, history.length);
  const result = checkTransactions(history, { workload, realtime });
  assert.equal(result.complete, true, where);
  const found = new Map<number, AnomalyType>();
  for (const anomaly of result.anomalies) {
    if (!CYCLIC.includes(anomaly.type)) continue;
    const cycle = anomaly.cycle!;
    // The reported cycle exists, closes, and fits its name.
    cycle.forEach((step, at) => {
      assert.equal(step.to, cycle[(at + 1) % cycle.length]!.from, where);
      assert.ok(
        edges.some((e) => e.from === step.from && e.to === step.to && e.type === step.type),
        `${where}: no edge ${JSON.stringify(step)}`,
      );
    });
    assert.equal(nameOf(cycle.map((step) => step.type)), anomaly.type, where);
    const members = cycle.map((step) => step.from);
    const component = [...expected.keys()].find((key) =>
      members.some((member) => reachesBothWays(edges, member, key, history.length)),
    );
    assert.ok(component !== undefined, `${where}: ${anomaly.type} outside any cycle`);
    assert.equal(found.has(component), false, `${where}: two anomalies for one component`);
    found.set(component, anomaly.type);
  }
  assert.deepEqual(
    [...found].sort((a, b) => a[0] - b[0]),
    [...expected].sort((a, b) => a[0] - b[0]),
    where,
  );
  return expected;
}

describe(
  'checkTransactions: the cycle search against every simple cycle',
  { timeout: 120_000 },
  () => {
    it(`random histories (seed ${SEED}, ${HISTORIES} histories): the same anomaly per component`, () => {
      const rng = createRandom(SEED);
      const tally = new Map<string, number>();
      for (let number = 0; number < HISTORIES; number += 1) {
        const workload: Workload = rng.next() < 0.5 ? 'list-append' : 'rw-register';
        const realtime = rng.next() < 0.6;
        const history = randomHistory(rng, workload);
        const where = `seed ${SEED}, history ${number} (${workload}, realtime ${realtime}): ${JSON.stringify(history)}`;
        for (const type of compare(history, workload, realtime, where).values())
          tally.set(type, (tally.get(type) ?? 0) + 1);
      }
      // Write skew that only real time closes is rare in random histories: one built by hand.
      const built: Transaction[] = [
        { process: 0, status: 'ok', ops: [r('x', []), a('y', 1)], start: 0, end: 10 },
        { process: 1, status: 'ok', ops: [a('x', 2)], start: 1, end: 2 },
        { process: 2, status: 'ok', ops: [r('y', [])], start: 3, end: 4 },
      ];
      for (const type of compare(built, 'list-append', true, 'built G2-realtime').values())
        tally.set(type, (tally.get(type) ?? 0) + 1);
      // And plain write skew, rare enough at random that a seed may miss it.
      const skew: Transaction[] = [
        { process: 0, status: 'ok', ops: [r('x', []), a('y', 1)] },
        { process: 1, status: 'ok', ops: [r('y', []), a('x', 2)] },
      ];
      for (const type of compare(skew, 'list-append', false, 'built G2').values())
        tally.set(type, (tally.get(type) ?? 0) + 1);
      console.log(`anomalies the histories held: ${JSON.stringify([...tally])}`);
      // The generator must reach every kind, or the comparison proves little.
      assert.deepEqual(new Set(tally.keys()), new Set(CYCLIC));
    });

    it('a cycle through 10,001 transactions is found within a 5 s budget', () => {
      // Serial read-modify-writes of one key each, then a read of the first
      // key's initial value: one G-single-realtime cycle through everything.
      const count = 10_000;
      const history = staleReadChain(count + 1);
      const result = checkTransactions(history, { workload: 'rw-register', timeoutMs: 5000 });
      assert.equal(result.complete, true);
      assert.deepEqual(result.counts, { 'G-single-realtime': 1 });
      assert.equal(result.anomalies[0]!.cycle!.length, count + 1);
      // A budget too small for it: the verdict is unknown, not a false "valid".
      const rushed = checkTransactions(history, { workload: 'rw-register', timeoutMs: 1 });
      assert.equal(rushed.verdict, 'unknown');
      assert.equal(rushed.complete, false);
      assert.equal(rushed.valid, false);
    });
  },
);

function reachesBothWays(
  edges: readonly CycleStep[],
  a: number,
  b: number,
  nodes: number,
): boolean {
  const reaches = (from: number, to: number) => {
    const seen = new Set([from]);
    const queue = [from];
    while (queue.length > 0) {
      const node = queue.shift()!;
      if (node === to) return true;
      for (const edge of edges)
        if (edge.from === node && !seen.has(edge.to)) {
          seen.add(edge.to);
          queue.push(edge.to);
        }
    }
    return false;
  };
  return nodes > 0 && reaches(a, b) && reaches(b, a);
}
