/**
 * The linearizability checker on the shared ground truth (70 Jepsen etcd
 * histories, 6 key-value histories) and on generated key-value histories of
 * growing size, partitioned by key: verdicts, total and p99 time per
 * history, and time per operation.
 *
 *   npm run bench:check [-- --histories ../shared/histories/porcupine --json]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import {
  checkLinearizable,
  kvModel,
  parseJepsenRegister,
  parsePorcupineKv,
  registerModel,
  type KvInput,
  type Operation,
} from '../packages/raceguard/dist/check/index.js';

const { values: args } = parseArgs({
  options: {
    histories: {
      type: 'string',
      default: new URL('../../shared/histories/porcupine/', import.meta.url).pathname,
    },
    json: { type: 'boolean', default: false },
  },
});
const root = args.histories.endsWith('/') ? args.histories : `${args.histories}/`;
const expected = JSON.parse(readFileSync(`${root}expected.json`, 'utf8')) as {
  etcd: Record<string, boolean>;
  kv: Record<string, boolean>;
};

interface SuiteResult {
  suite: string;
  histories: number;
  operations: number;
  verdictsCorrect: number;
  totalMs: number;
  p99Ms: number;
  usPerOperation: number;
}
const results: SuiteResult[] = [];

function suite(
  name: string,
  files: [string, boolean][],
  check: (text: string) => { ms: number; ops: number; ok: boolean },
) {
  const times: number[] = [];
  let correct = 0;
  let operations = 0;
  for (const [file, linearizable] of files) {
    const { ms, ops, ok } = check(readFileSync(file, 'utf8'));
    times.push(ms);
    operations += ops;
    if (ok === linearizable) correct++;
  }
  const totalMs = times.reduce((a, b) => a + b, 0);
  results.push({
    suite: name,
    histories: files.length,
    operations,
    verdictsCorrect: correct,
    totalMs: Math.round(totalMs),
    p99Ms: Math.round(percentile(times, 99) * 10) / 10,
    usPerOperation: Math.round((totalMs * 1000) / operations) / 1,
  });
}

suite(
  'jepsen-etcd',
  Object.entries(expected.etcd).map(([f, v]) => [`${root}etcd/${f}`, v]),
  (text) => {
    const ops = parseJepsenRegister(text);
    const started = performance.now();
    const { verdict } = checkLinearizable(registerModel, ops, { timeoutMs: 60_000 });
    return { ms: performance.now() - started, ops: ops.length, ok: verdict === 'linearizable' };
  },
);
suite(
  'porcupine-kv',
  Object.entries(expected.kv).map(([f, v]) => [`${root}kv/${f}`, v]),
  (text) => {
    const ops = parsePorcupineKv(text);
    const started = performance.now();
    const { verdict } = checkLinearizable(kvModel, ops, { timeoutMs: 60_000 });
    return { ms: performance.now() - started, ops: ops.length, ok: verdict === 'linearizable' };
  },
);

/**
 * A linearizable key-value history: 20 clients, each operation an interval
 * of random length, its effect applied at a random instant inside it (so
 * the outputs are those of a real atomic map).
 */
function generated(operations: number, keys: number): Operation<KvInput, string>[] {
  const clients = 20;
  const next = new Array<number>(clients).fill(0);
  const planned: { client: number; input: KvInput; call: number; ret: number; at: number }[] = [];
  for (let i = 0; i < operations; i++) {
    const client = i % clients;
    const call = (next[client] as number) + Math.random() * 5;
    const ret = call + 1 + Math.random() * 10;
    next[client] = ret;
    const key = `k${Math.floor(Math.random() * keys)}`;
    const kind = Math.random();
    const input: KvInput =
      kind < 0.5
        ? { op: 'get', key }
        : kind < 0.75
          ? { op: 'put', key, value: `v${i}` }
          : { op: 'append', key, value: `+${i}` };
    planned.push({ client, input, call, ret, at: call + Math.random() * (ret - call) });
  }
  const state = new Map<string, string>();
  const outputs = new Map<number, string>();
  [...planned.keys()]
    .sort((a, b) => (planned[a] as { at: number }).at - (planned[b] as { at: number }).at)
    .forEach((index) => {
      const { input } = planned[index] as { input: KvInput };
      const current = state.get(input.key) ?? '';
      if (input.op === 'get') outputs.set(index, current);
      else state.set(input.key, input.op === 'put' ? input.value : current + input.value);
      if (input.op !== 'get') outputs.set(index, '');
    });
  return planned.map((p, i) => ({
    client: p.client,
    input: p.input,
    output: outputs.get(i),
    call: p.call,
    return: p.ret,
  }));
}

const scaling: {
  operations: number;
  keys: number;
  ms: number;
  usPerOperation: number;
  verdict: string;
}[] = [];
for (const [operations, keys] of [
  [1000, 10],
  [10_000, 100],
  [100_000, 1000],
] as const) {
  const history = generated(operations, keys);
  const started = performance.now();
  const { verdict } = checkLinearizable(kvModel, history, { timeoutMs: 120_000 });
  const ms = performance.now() - started;
  scaling.push({
    operations,
    keys,
    ms: Math.round(ms),
    usPerOperation: Math.round((ms * 1000) / operations),
    verdict,
  });
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results, scaling }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      ['suite', 'histories', 'operations', 'verdicts correct', 'total ms', 'p99 ms', 'µs/op'],
      results.map((r) => [
        r.suite,
        String(r.histories),
        String(r.operations),
        `${r.verdictsCorrect}/${r.histories}`,
        String(r.totalMs),
        String(r.p99Ms),
        String(r.usPerOperation),
      ]),
    )}\n\n${renderTable(
      ['generated kv history', 'keys', 'verdict', 'ms', 'µs/op'],
      scaling.map((s) => [
        `${s.operations} ops`,
        String(s.keys),
        s.verdict,
        String(s.ms),
        String(s.usPerOperation),
      ]),
    )}\n`,
  );
}
