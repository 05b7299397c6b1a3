/**
 * Runs one benchmark with `--json` and keeps what it printed, with when and
 * where it ran, in `bench/results/<name>.json`: the input of the summary
 * table in docs/benchmarks.md (`npm run bench:summary`). The machine's load
 * is read before and after (the 1-minute load average and how many cores),
 * so a figure measured on a busy machine says so beside it.
 *
 *   npx tsx bench/record.ts idempotency -- bench/idempotency.ts --rounds 3
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

const separator = process.argv.indexOf('--');
const name = process.argv[2];
const command = separator === -1 ? [] : process.argv.slice(separator + 1);
if (name === undefined || separator !== 3 || command.length === 0 || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: record <name> -- <bench file> [its arguments]\n');
  process.exit(2);
}

const loadBefore = loadavg()[0] as number;
const started = new Date();
// `--json` right after the file, so a wrapper (bench/ab.ts) takes it as its own.
const child = spawn('npx', ['tsx', command[0] as string, '--json', ...command.slice(1)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let stdout = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (chunk: string) => (stdout += chunk));
const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
if (status !== 0) {
  process.stderr.write(`record: the benchmark exited ${status}; nothing recorded\n`);
  process.exit(1);
}
let output: unknown;
try {
  output = JSON.parse(stdout);
} catch (error) {
  process.stderr.write(
    `record: the benchmark printed no JSON (${String(error)}); nothing recorded\n`,
  );
  process.exit(1);
}
const record = {
  name,
  command: command.join(' '),
  date: started.toISOString().slice(0, 10),
  seconds: Math.round((Date.now() - started.getTime()) / 1000),
  machine: {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    /** The 1-minute load average before and after the run. */
    load: [Number(loadBefore.toFixed(2)), Number((loadavg()[0] as number).toFixed(2))],
  },
  output,
};
const directory = join(import.meta.dirname, 'results');
mkdirSync(directory, { recursive: true });
const file = join(directory, `${name}.json`);
writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
process.stderr.write(`record: ${file}\n`);
