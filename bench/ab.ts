/**
 * A/B: one benchmark on today's code and on an earlier commit's, in the same
 * minutes. The earlier commit is checked out in a worktree (built with its
 * own sources, sharing this checkout's node_modules), then the benchmark
 * runs in each tree in turn, several rounds, the order alternating so drift
 * in the machine's load hits both sides alike. Each run's `--json` results
 * are matched row by row (the rows' text fields name them) and every numeric
 * field is reported as the median per side and their ratio (today / then).
 *
 * Numeric fields that name a row too (a row per key count or client count)
 * are given with `--by`.
 *
 *   npx tsx bench/ab.ts --ref 5bf56b7 [--rounds 3] -- bench/locks.ts --backend redis --scenario uncontended
 *   npx tsx bench/ab.ts --ref 7fe53e3 --by keys -- bench/ordering.ts
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { median } from './stats.js';

const separator = process.argv.indexOf('--');
const { values: args } = parseArgs({
  args: process.argv.slice(2, separator === -1 ? undefined : separator),
  options: {
    ref: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    by: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
  },
});
const command = separator === -1 ? [] : process.argv.slice(separator + 1);
const rounds = Number(args.rounds);
const naming = new Set(args.by.split(',').filter((field) => field !== ''));
if (args.ref === undefined || command.length === 0 || !(rounds >= 1)) {
  process.stderr.write(
    'usage: ab --ref <commit> [--rounds N] [--by field,...] -- <bench file> [its arguments]\n',
  );
  process.exit(2);
}
const log = (line: string) => process.stderr.write(`${line}\n`);
const here = process.cwd();
const git = (...argv: string[]) => execFileSync('git', argv, { encoding: 'utf8' }).trim();
const sha = git('rev-parse', '--short', args.ref);
const head = git('rev-parse', '--short', 'HEAD');
const then = join('/tmp', `raceguard-ab-${sha}`);
if (!existsSync(then)) {
  log(`checking out ${sha} in ${then}`);
  git('worktree', 'add', '--detach', then, sha);
  symlinkSync(join(here, 'node_modules'), join(then, 'node_modules'));
}
for (const tree of [then, here]) {
  log(`building ${tree}`);
  execFileSync('npx', ['tsc', '-p', 'packages/raceguard/tsconfig.build.json'], {
    cwd: tree,
    stdio: 'inherit',
  });
  // The CLI of an older tree may not type-check against today's shared
  // node_modules; the benchmarks use only its table and statistics helpers,
  // which tsc emits all the same.
  const cli = spawnSync('npx', ['tsc', '-p', 'packages/cli/tsconfig.build.json'], { cwd: tree });
  if (cli.status !== 0) log(`  the CLI of ${tree} built with type errors (emitted anyway)`);
}

type Row = Record<string, unknown>;
const runs: Record<'then' | 'now', Row[][]> = { then: [], now: [] };
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? (['then', 'now'] as const) : (['now', 'then'] as const);
  for (const side of order) {
    log(`round ${round + 1}: ${side === 'then' ? sha : head}...`);
    const run = spawnSync('npx', ['tsx', ...command, '--json'], {
      cwd: side === 'then' ? then : here,
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (run.status !== 0) throw new Error(`${side}: the benchmark exited ${run.status}`);
    const parsed = JSON.parse(run.stdout) as { results?: Row[] };
    runs[side].push(parsed.results ?? []);
  }
}

/** A row's name: its text fields and the `--by` fields, in order. */
const nameOf = (row: Row) =>
  Object.entries(row)
    .filter(
      ([key, value]) => typeof value === 'string' || typeof value === 'boolean' || naming.has(key),
    )
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(' ');
const numbersOf = (side: 'then' | 'now') => {
  const byName = new Map<string, Map<string, number[]>>();
  for (const results of runs[side])
    for (const row of results) {
      const fields = byName.get(nameOf(row)) ?? new Map<string, number[]>();
      byName.set(nameOf(row), fields);
      for (const [key, value] of Object.entries(row))
        if (typeof value === 'number' && !naming.has(key))
          fields.set(key, [...(fields.get(key) ?? []), value]);
    }
  return byName;
};
const before = numbersOf('then');
const after = numbersOf('now');
const rows: { row: string; field: string; then: number; now: number; ratio: number }[] = [];
for (const [name, fields] of after)
  for (const [field, values] of fields) {
    const old = before.get(name)?.get(field);
    if (old === undefined) continue;
    const a = median(old);
    const b = median(values);
    rows.push({ row: name, field, then: a, now: b, ratio: a === 0 ? Number.NaN : b / a });
  }
if (args.json)
  process.stdout.write(`${JSON.stringify({ then: sha, now: head, rounds, rows }, null, 2)}\n`);
else
  process.stdout.write(
    `${renderTable(
      ['row', 'field', `${sha} (then)`, `${head} (now)`, 'now / then'],
      rows.map((r) => [
        r.row,
        r.field,
        String(Math.round(r.then * 1000) / 1000),
        String(Math.round(r.now * 1000) / 1000),
        r.ratio.toFixed(3),
      ]),
    )}\nmedians of ${rounds} round(s) per side, sides alternating\n`,
  );
