/**
 * The linearizability checker on the shared ground truth (70 Jepsen etcd
 * histories, 6 key-value histories) and on generated key-value histories of
 * growing size, partitioned by key: verdicts, total and p99 time per
 * history, and time per operation.
 *
 *   npm run bench:check [-- --histories ../shared/histories/porcupine --rounds 3 --json]
 *
 * With Go installed, Porcupine (../shared/peers/porcupine) runs on the same
 * files in the same run (bench/porcupine/timing_test.go next to its sources).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import {
  checkLinearizable,
  checkTransactions,
  kvModel,
  parseJepsenRegister,
  parsePorcupineKv,
  registerModel,
  type KvInput,
  type MicroOp,
  type Transaction,
  type Operation,
} from '../packages/raceguard/dist/check/index.js';
import { staleReadChain } from '../test/helpers/transactions.js';

const { values: args } = parseArgs({
  options: {
    histories: {
      type: 'string',
      default: new URL('../../shared/histories/porcupine/', import.meta.url).pathname,
    },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const root = args.histories.endsWith('/') ? args.histories : `${args.histories}/`;
const expected = JSON.parse(readFileSync(`${root}expected.json`, 'utf8')) as {
  etcd: Record<string, boolean>;
  kv: Record<string, boolean>;
};

const rounds = Number(args.rounds);

/** Porcupine's time per file (the fastest of `rounds`), when Go is installed: its own test parsers, our timing loop. */
function porcupineTimes(): Map<string, { ms: number; linearizable: boolean }> | undefined {
  if (spawnSync('go', ['version']).status !== 0) return undefined;
  const peer = new URL('../../shared/peers/porcupine/', import.meta.url).pathname;
  if (!existsSync(peer)) return undefined;
  const work = mkdtempSync(join(tmpdir(), 'raceguard-porcupine-'));
  cpSync(peer, work, { recursive: true });
  cpSync(`${root}etcd`, join(work, 'test_data', 'jepsen'), { recursive: true });
  cpSync(`${root}kv`, join(work, 'test_data', 'kv'), { recursive: true });
  cpSync(
    new URL('./porcupine/timing_test.go', import.meta.url).pathname,
    join(work, 'timing_test.go'),
  );
  const run = spawnSync('go', ['test', '-run', 'TestRaceguardTiming', '-v', '.'], {
    cwd: work,
    encoding: 'utf8',
    env: { ...process.env, GOFLAGS: '-mod=mod', GOPROXY: 'off', RACEGUARD_ROUNDS: String(rounds) },
    maxBuffer: 64 * 2 ** 20,
  });
  rmSync(work, { recursive: true, force: true });
  if (run.status !== 0) {
    process.stderr.write(`porcupine did not run: ${run.stderr || run.stdout}\n`);
    return undefined;
  }
  const times = new Map<string, { ms: number; linearizable: boolean }>();
  for (const line of run.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const row = JSON.parse(line) as { file: string; ms: number; linearizable: boolean };
    times.set(row.file, { ms: row.ms, linearizable: row.linearizable });
  }
  return times;
}

interface FileResult {
  suite: string;
  file: string;
  operations: number;
  expected: boolean;
  verdict: string;
  /** The verdict alone (explainMs 0), fastest of the rounds. */
  ms: number;
  /** Verdict and explanation (the default explainMs). */
  explainedMs: number;
  porcupineMs: number | null;
}
interface SuiteResult {
  suite: string;
  histories: number;
  operations: number;
  verdictsCorrect: number;
  totalMs: number;
  explainedTotalMs: number;
  p99Ms: number;
  usPerOperation: number;
  porcupineTotalMs: number | null;
  /** Per file, ours / Porcupine's, over files Porcupine needs at least 1 ms for. */
  ratioMedian: number | null;
  ratioMax: number | null;
  filesOver1Ms: number;
  within2x: number;
}
const porcupine = porcupineTimes();
const files: FileResult[] = [];
const results: SuiteResult[] = [];

function suite(
  name: string,
  entries: [string, boolean][],
  parse: (text: string) => Operation[],
  model: Parameters<typeof checkLinearizable>[0],
) {
  for (const [path, linearizable] of entries) {
    const ops = parse(readFileSync(path, 'utf8'));
    let best = Number.POSITIVE_INFINITY;
    let verdict = '';
    for (let round = 0; round < rounds; round++) {
      const started = performance.now();
      verdict = checkLinearizable(model, ops, { timeoutMs: 60_000, explainMs: 0 }).verdict;
      best = Math.min(best, performance.now() - started);
    }
    const started = performance.now();
    checkLinearizable(model, ops, { timeoutMs: 60_000 });
    const explainedMs = performance.now() - started;
    const file = path.split('/').at(-1)!;
    files.push({
      suite: name,
      file,
      operations: ops.length,
      expected: linearizable,
      verdict,
      ms: best,
      explainedMs,
      porcupineMs: porcupine?.get(file)?.ms ?? null,
    });
  }
  const mine = files.filter((f) => f.suite === name);
  const times = mine.map((f) => f.ms);
  const totalMs = times.reduce((a, b) => a + b, 0);
  const operations = mine.reduce((a, f) => a + f.operations, 0);
  const timed = mine.filter((f) => f.porcupineMs !== null && f.porcupineMs >= 1);
  const ratios = timed.map((f) => f.ms / f.porcupineMs!).sort((a, b) => a - b);
  const round2 = (value: number) => Math.round(value * 100) / 100;
  results.push({
    suite: name,
    histories: mine.length,
    operations,
    verdictsCorrect: mine.filter(
      (f) => f.verdict === (f.expected ? 'linearizable' : 'not-linearizable'),
    ).length,
    totalMs: Math.round(totalMs),
    explainedTotalMs: Math.round(mine.reduce((a, f) => a + f.explainedMs, 0)),
    p99Ms: Math.round(percentile(times, 99) * 10) / 10,
    usPerOperation: Math.round((totalMs * 1000) / operations),
    porcupineTotalMs:
      porcupine === undefined
        ? null
        : Math.round(mine.reduce((a, f) => a + (f.porcupineMs ?? 0), 0)),
    ratioMedian: ratios.length === 0 ? null : round2(ratios[Math.floor(ratios.length / 2)]!),
    ratioMax: ratios.length === 0 ? null : round2(ratios.at(-1)!),
    filesOver1Ms: timed.length,
    within2x: ratios.filter((ratio) => ratio <= 2).length,
  });
}

suite(
  'jepsen-etcd',
  Object.entries(expected.etcd).map(([f, v]) => [`${root}etcd/${f}`, v]),
  parseJepsenRegister,
  registerModel,
);
suite(
  'porcupine-kv',
  Object.entries(expected.kv).map(([f, v]) => [`${root}kv/${f}`, v]),
  parsePorcupineKv,
  kvModel,
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

/** Transactional histories of growing size: a serial chain closed by one stale read (one cycle through every transaction), and concurrent list-append. */
/** Serializable list-append: `count` transactions of 4 micro-operations over `keys` keys, 5 at a time. */
function appends(count: number, keys: number): Transaction[] {
  const lists: number[][] = Array.from({ length: keys }, () => []);
  let fresh = 1;
  return Array.from({ length: count }, (_, index) => {
    const ops: MicroOp[] = Array.from({ length: 4 }, () => {
      const key = Math.floor(Math.random() * keys);
      if (Math.random() < 0.5) {
        lists[key]!.push(fresh);
        return { f: 'append', key: `k${key}`, value: fresh++ } as const;
      }
      return { f: 'r', key: `k${key}`, value: [...lists[key]!] } as const;
    });
    return { process: index % 5, status: 'ok', ops, start: index, end: index + 1 };
  });
}
const transactional: { history: string; transactions: number; verdict: string; ms: number }[] = [];
for (const [name, history, workload] of [
  ['rw-register chain, 10,001', staleReadChain(10_001), 'rw-register'],
  ['rw-register chain, 100,001', staleReadChain(100_001), 'rw-register'],
  ['list-append, 25,000 (100,000 micro-ops)', appends(25_000, 2000), 'list-append'],
] as const) {
  const started = performance.now();
  const result = checkTransactions(history, { workload, timeoutMs: 120_000 });
  transactional.push({
    history: name,
    transactions: history.length,
    verdict:
      result.verdict === 'anomalies'
        ? Object.entries(result.counts)
            .map(([type, n]) => `${type} x${n}`)
            .join(', ')
        : result.verdict,
    ms: Math.round(performance.now() - started),
  });
}

if (args.json) {
  process.stdout.write(
    `${JSON.stringify({ results, files, scaling, transactional, maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024) }, null, 2)}\n`,
  );
} else {
  process.stdout.write(
    `${renderTable(
      [
        'suite',
        'histories',
        'verdicts correct',
        'total ms (verdict)',
        'with explanation',
        'porcupine ms',
        'per file / porcupine: median, max',
        'within 2x (files over 1 ms)',
      ],
      results.map((r) => [
        r.suite,
        String(r.histories),
        `${r.verdictsCorrect}/${r.histories}`,
        String(r.totalMs),
        String(r.explainedTotalMs),
        r.porcupineTotalMs === null ? 'no go' : String(r.porcupineTotalMs),
        r.ratioMedian === null ? '-' : `${r.ratioMedian}x, ${r.ratioMax}x`,
        `${r.within2x}/${r.filesOver1Ms}`,
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
    )}\n\n${renderTable(
      ['transactional history', 'transactions', 'verdict', 'ms'],
      transactional.map((t) => [t.history, String(t.transactions), t.verdict, String(t.ms)]),
    )}\npeak memory of this process: ${Math.round(process.resourceUsage().maxRSS / 1024)} MB\n`,
  );
}
