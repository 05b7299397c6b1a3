/**
 * `raceguard check` driven as a child process: verdicts per file on the
 * shared Jepsen and key-value histories, `--json`, and the exit codes (0
 * all linearizable, 1 any not, 2 unknown or error).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { findHistories } from '../helpers/histories.js';
import { staleReadChain } from '../helpers/transactions.js';

const ROOT = findHistories() ?? '';
const cli = (...args: string[]) =>
  spawnSync(
    process.execPath,
    [
      '--conditions=raceguard-source',
      '--import',
      'tsx',
      'packages/cli/src/commands/main.ts',
      'check',
      ...args,
    ],
    { encoding: 'utf8', timeout: 120_000 },
  );

describe('raceguard check (CLI)', () => {
  it(
    'one verdict per file; exit 1 when any history is not linearizable, 0 when all are',
    {
      skip: ROOT === '' ? 'no shared/histories found (set RACEGUARD_HISTORIES)' : false,
    },
    () => {
      const mixed = cli(
        '--format',
        'jepsen-etcd',
        '--json',
        `${ROOT}etcd/etcd_002.log`,
        `${ROOT}etcd/etcd_000.log`,
      );
      assert.equal(mixed.status, 1, mixed.stderr);
      const { results } = JSON.parse(mixed.stdout) as {
        results: { file: string; model: string; verdict: string; operations: number; ms: number }[];
      };
      assert.deepEqual(
        results.map((r) => [r.file.split('/').at(-1), r.model, r.verdict]),
        [
          ['etcd_002.log', 'register', 'linearizable'],
          ['etcd_000.log', 'register', 'not-linearizable'],
        ],
      );
      assert.ok(results.every((r) => r.operations > 0 && r.ms >= 0));
      const good = cli('--format', 'porcupine-kv', `${ROOT}kv/c10-ok.txt`);
      assert.equal(good.status, 0, good.stderr);
      assert.match(good.stdout, /file\s+model\s+operations\s+verdict\s+ms/);
      assert.match(good.stdout, /c10-ok\.txt\s+kv\s+\d+\s+linearizable/);
    },
  );

  it('exit 2 when the budget runs out (unknown), for a file that cannot be read, and for bad arguments', () => {
    const folder = mkdtempSync(join(tmpdir(), 'raceguard-check-'));
    const hard = join(folder, 'hard.log');
    const lines: string[] = [];
    for (let p = 0; p < 30; p++) lines.push(`INFO  jepsen.util - ${p}\t:invoke\t:write\t${p + 1}`);
    lines.push('INFO  jepsen.util - 99\t:invoke\t:read\tnil');
    for (let p = 0; p < 30; p++) lines.push(`INFO  jepsen.util - ${p}\t:ok\t:write\t${p + 1}`);
    lines.push('INFO  jepsen.util - 99\t:ok\t:read\t999');
    writeFileSync(hard, `${lines.join('\n')}\n`);
    const unknown = cli('--format', 'jepsen-etcd', '--timeout-ms', '50', '--json', hard);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.equal(
      (JSON.parse(unknown.stdout) as { results: { verdict: string }[] }).results[0]?.verdict,
      'unknown',
    );
    const missing = cli('--format', 'jepsen-etcd', join(folder, 'nope.log'));
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /nope\.log/);
    const garbled = join(folder, 'garbled.log');
    writeFileSync(garbled, 'not a log\n');
    const bad = cli('--format', 'jepsen-etcd', garbled);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /line 1: not a Jepsen log line/);
    // A transactional history honours the budget too: 10,001 transactions in one cycle.
    const chain = join(folder, 'chain.json');
    const transactions = staleReadChain(10_001);
    writeFileSync(chain, JSON.stringify({ transactions }));
    const rushed = cli('--workload', 'rw-register', '--timeout-ms', '1', '--json', chain);
    assert.equal(rushed.status, 2, rushed.stderr);
    assert.equal(
      (JSON.parse(rushed.stdout) as { results: { verdict: string }[] }).results[0]?.verdict,
      'unknown',
    );
    const found = cli('--workload', 'rw-register', chain);
    assert.equal(found.status, 1, found.stderr);
    assert.match(found.stdout, /anomalies: G-single-realtime/);
    assert.equal(cli('--format', 'xml', hard).status, 2);
    assert.equal(cli('--format', 'jepsen-etcd', '--model', 'kv', hard).status, 2);
  });

  it('a history whose search explodes stays under 1 GB and ends "unknown (memory budget ran out)"', () => {
    // 120,000 register operations from 20 processes, 5% of the writes of
    // unknown outcome (9 MB of log): every crashed write stays pending, and
    // the configurations to remember grow without end. Before the memory
    // budget, this took the process to 1.9 GB within its time budget.
    const folder = mkdtempSync(join(tmpdir(), 'raceguard-check-'));
    const log = join(folder, 'explodes.log');
    let seed = 20261207;
    const next = () => {
      seed ^= seed << 13;
      seed >>>= 0;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      seed >>>= 0;
      return seed / 2 ** 32;
    };
    const lines: string[] = [];
    const open = new Map<number, string>();
    const processes = Array.from({ length: 20 }, (_, index) => index);
    let fresh = 20;
    let value = 0;
    for (let done = 0; done < 120_000;) {
      const slot = Math.floor(next() * processes.length);
      const process = processes[slot]!;
      const pending = open.get(process);
      if (pending === undefined) {
        const write = next() < 0.5 ? String(Math.floor(next() * 5)) : undefined;
        open.set(process, write ?? 'read');
        lines.push(
          `INFO  jepsen.util - ${process}\t:invoke\t${write === undefined ? ':read\tnil' : `:write\t${write}`}`,
        );
        continue;
      }
      open.delete(process);
      done += 1;
      if (pending === 'read') lines.push(`INFO  jepsen.util - ${process}\t:ok\t:read\t${value}`);
      else if (next() < 0.05) {
        lines.push(`INFO  jepsen.util - ${process}\t:info\t:write\t${pending}\t:timeout`);
        processes[slot] = fresh++; // a crashed process is replaced, as Jepsen does
      } else {
        value = Number(pending);
        lines.push(`INFO  jepsen.util - ${process}\t:ok\t:write\t${pending}`);
      }
    }
    writeFileSync(log, `${lines.join('\n')}\n`);
    // The peak memory of the CLI's process, written when it exits.
    const probe = join(folder, 'rss.cjs');
    writeFileSync(
      probe,
      "process.on('exit', () => process.stderr.write(`maxrss ${process.resourceUsage().maxRSS}\\n`));\n",
    );
    const run = spawnSync(
      process.execPath,
      [
        '--require',
        probe,
        '--conditions=raceguard-source',
        '--import',
        'tsx',
        'packages/cli/src/commands/main.ts',
        'check',
        '--format',
        'jepsen-etcd',
        log,
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stdout, /unknown \(memory budget ran out\)/);
    const kilobytes = Number(/maxrss (\d+)/.exec(run.stderr)?.[1]);
    assert.ok(kilobytes > 0 && kilobytes < 1024 * 1024, `peak ${kilobytes} KB`);
  });
});
