/**
 * `raceguard check <files...>`: is each recorded history linearizable? One
 * verdict per file; exit 0 when every history is linearizable, 1 when any
 * is not, 2 on an error or when a verdict is unknown (the time budget ran
 * out).
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import {
  checkLinearizable,
  kvModel,
  parseJepsenRegister,
  parsePorcupineKv,
  registerModel,
  type Verdict,
} from 'raceguard/check';
import { integer, messageOf } from './options.js';
import { renderTable } from './table.js';

/** One file's verdict, as `--json` prints it. */
export interface CheckFileResult {
  readonly file: string;
  readonly model: 'register' | 'kv';
  readonly verdict: Verdict;
  readonly operations: number;
  /** Checking time of this file alone, parsing excluded. */
  readonly ms: number;
}

/** Check one file's history. */
async function checkFile(
  file: string,
  format: 'jepsen-etcd' | 'porcupine-kv',
  timeoutMs: number,
): Promise<CheckFileResult> {
  const text = await readFile(file, 'utf8');
  if (format === 'jepsen-etcd') {
    const operations = parseJepsenRegister(text);
    const started = performance.now();
    const { verdict } = checkLinearizable(registerModel, operations, { timeoutMs });
    return {
      file,
      model: 'register',
      verdict,
      operations: operations.length,
      ms: performance.now() - started,
    };
  }
  const operations = parsePorcupineKv(text);
  const started = performance.now();
  const { verdict } = checkLinearizable(kvModel, operations, { timeoutMs });
  return {
    file,
    model: 'kv',
    verdict,
    operations: operations.length,
    ms: performance.now() - started,
  };
}

/** `raceguard check`. */
export function checkCommand(): Command {
  return new Command('check')
    .description(
      'check recorded histories for linearizability: one verdict per file (exit 0 all linearizable, 1 any not, 2 error or unknown)',
    )
    .argument('<files...>', 'history files')
    .addOption(
      new Option('--format <format>', "the files' format")
        .choices(['jepsen-etcd', 'porcupine-kv'])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--model <model>',
        'the object (register for jepsen-etcd, kv for porcupine-kv)',
      ).choices(['register', 'kv']),
    )
    .option(
      '--timeout-ms <ms>',
      'time budget per file; past it the verdict is unknown',
      integer(1),
      10_000,
    )
    .option('--json', 'print { "results": [ { "file", "model", "verdict", "operations", "ms" } ] }')
    .action(
      async (
        files: string[],
        options: {
          format: 'jepsen-etcd' | 'porcupine-kv';
          model?: 'register' | 'kv';
          timeoutMs: number;
          json?: boolean;
        },
      ) => {
        const expected = options.format === 'jepsen-etcd' ? 'register' : 'kv';
        if (options.model !== undefined && options.model !== expected) {
          throw new Error(
            `--format ${options.format} records the ${expected} model, not ${options.model}`,
          );
        }
        const results: CheckFileResult[] = [];
        for (const file of files) {
          try {
            results.push(await checkFile(file, options.format, options.timeoutMs));
          } catch (error) {
            throw new Error(`${file}: ${messageOf(error)}`, { cause: error });
          }
        }
        if (options.json) {
          process.stdout.write(
            `${JSON.stringify({ results: results.map((r) => ({ ...r, ms: Math.round(r.ms * 100) / 100 })) }, null, 2)}\n`,
          );
        } else {
          process.stdout.write(
            `${renderTable(
              ['file', 'model', 'operations', 'verdict', 'ms'],
              results.map((r) => [
                r.file,
                r.model,
                String(r.operations),
                r.verdict,
                r.ms.toFixed(1),
              ]),
            )}\n`,
          );
        }
        process.exitCode = results.some((r) => r.verdict === 'unknown')
          ? 2
          : results.some((r) => r.verdict === 'not-linearizable')
            ? 1
            : 0;
      },
    );
}
