/**
 * `raceguard check <files...>`: is each recorded history linearizable, or
 * (for transactional histories) free of isolation anomalies? One verdict per
 * file; exit 0 when every history is fine, 1 when any is not, 2 on an error
 * or when a verdict is unknown (the time budget ran out).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Command, Option } from 'commander';
import {
  MODELS,
  modelByName,
  operationsMisfit,
  type ModelName,
  checkLinearizable,
  checkTransactions,
  parseJepsenRegister,
  parsePorcupineKv,
  HistoryFormatError,
  type AnomalyType,
  type Operation,
  type Transaction,
} from 'raceguard/check';
import { anomaliesHtml, linearizabilityHtml } from '../check/history-html.js';
import { messageOf } from '../arguments.js';
import { integer } from './options.js';
import { renderTable } from './table.js';

const MODEL_NAMES = Object.keys(MODELS) as ModelName[];
type Format = 'jepsen-etcd' | 'porcupine-kv' | 'json';
type Workload = 'list-append' | 'rw-register';

/** One file's verdict, as `--json` prints it. */
export interface CheckFileResult {
  readonly file: string;
  /** The model (linearizability) or the workload (transactions). */
  readonly model: string;
  readonly verdict:
    'linearizable' | 'not-linearizable' | 'unknown' | 'no-anomalies' | 'anomalies' | 'error';
  /** Why the file could not be checked (verdict `error`). */
  readonly error?: string;
  /** For `unknown`: which budget ran out. */
  readonly reason?: 'time' | 'memory';
  /** Operations or transactions in the history. */
  readonly operations: number;
  /** Checking time of this file alone, parsing excluded. */
  readonly ms: number;
  /** For transactional histories: how many of each anomaly. */
  readonly anomalies?: Readonly<Partial<Record<AnomalyType, number>>>;
}

interface CheckOptions {
  /** Unset: JSON, as `raceguard run --history` writes it. */
  readonly format?: Format;
  readonly model?: ModelName;
  readonly workload?: Workload;
  readonly timeoutMs: number;
  readonly explainMs?: number;
  readonly maxMemoryMb: number;
  readonly html?: string;
}

/**
 * Reads a JSON history: an array of operations, `{ "operations": [...] }`
 * (with the `model` it was recorded for, as `raceguard run --history`
 * writes), or `{ "transactions": [...] }`.
 */
function readJson(text: string): {
  operations?: Operation[];
  transactions?: Transaction[];
  model?: ModelName;
} {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new HistoryFormatError(
      1,
      `not JSON (${messageOf(error)}); for a Jepsen or Porcupine log pass --format jepsen-etcd or porcupine-kv`,
    );
  }
  const body = Array.isArray(parsed) ? { operations: parsed } : (parsed as Record<string, unknown>);
  if (typeof body !== 'object' || body === null) {
    throw new HistoryFormatError(
      1,
      'expected an array of operations or { "operations" } or { "transactions" }',
    );
  }
  if (Array.isArray(body.transactions)) return { transactions: body.transactions as Transaction[] };
  const recorded = Array.isArray(parsed) ? undefined : body.model;
  if (recorded !== undefined && !MODEL_NAMES.includes(recorded as ModelName)) {
    throw new HistoryFormatError(
      1,
      `"model" must be one of ${MODEL_NAMES.join(', ')}, got ${JSON.stringify(recorded)}`,
    );
  }
  if (!Array.isArray(body.operations)) {
    throw new HistoryFormatError(
      1,
      'expected an array of operations or { "operations" } or { "transactions" }',
    );
  }
  // JSON has no Infinity nor undefined: `"return": null` and a missing `output` mean an unknown outcome.
  const operations = (body.operations as Record<string, unknown>[]).map((op) => {
    const unknown = op.return === null || !('output' in op);
    return {
      client: op.client as number | string,
      input: op.input,
      output: unknown ? undefined : op.output,
      call: op.call as number,
      return: op.return === null ? Number.POSITIVE_INFINITY : (op.return as number),
    } satisfies Operation;
  });
  return { operations, ...(recorded !== undefined && { model: recorded as ModelName }) };
}

/** Check one file's history; write its page when `--html` is given. */
async function checkFile(file: string, options: CheckOptions): Promise<CheckFileResult> {
  const text = await readFile(file, 'utf8');
  if (text.trim() === '') throw new Error('the file is empty: no history to check');
  let operations: Operation[];
  let model: ModelName;
  if (options.format === 'jepsen-etcd') {
    operations = parseJepsenRegister(text);
    model = options.model ?? 'register';
  } else if (options.format === 'porcupine-kv') {
    operations = parsePorcupineKv(text);
    model = 'kv';
  } else {
    const history = readJson(text);
    if (history.transactions !== undefined) {
      if (options.workload === undefined) {
        throw new Error('a transactional history needs --workload list-append or rw-register');
      }
      const started = performance.now();
      const result = checkTransactions(history.transactions, {
        workload: options.workload,
        timeoutMs: options.timeoutMs,
      });
      const ms = performance.now() - started;
      if (options.html !== undefined) {
        await writeFile(
          join(options.html, `${basename(file)}.html`),
          anomaliesHtml({
            file,
            workload: options.workload,
            transactions: history.transactions,
            anomalies: result.anomalies,
          }),
        );
      }
      return {
        file,
        model: options.workload,
        verdict: result.verdict === 'valid' ? 'no-anomalies' : result.verdict,
        ...(result.verdict === 'unknown' && { reason: 'time' as const }),
        operations: history.transactions.length,
        ms,
        anomalies: result.counts,
      };
    }
    const named = options.model ?? history.model;
    if (named === undefined) {
      throw new Error(
        'the history names no model: pass --model (raceguard run --history records it when the scenario names one)',
      );
    }
    operations = history.operations!;
    model = named;
  }
  if (operations.length === 0) throw new Error('the history has no operations');
  const misfit = operationsMisfit(model, operations);
  if (misfit !== undefined) throw new Error(`not a ${model} history: ${misfit}`);
  const started = performance.now();
  const result = checkLinearizable(modelByName(model), operations, {
    timeoutMs: options.timeoutMs,
    // A page shows the explanation: give it the whole budget again.
    explainMs: options.explainMs ?? (options.html === undefined ? 100 : options.timeoutMs),
    maxMemoryMb: options.maxMemoryMb,
  });
  const ms = performance.now() - started;
  if (options.html !== undefined) {
    await writeFile(
      join(options.html, `${basename(file)}.html`),
      linearizabilityHtml({ file, model, operations, ...result }),
    );
  }
  return {
    file,
    model,
    verdict: result.verdict,
    ...(result.reason !== undefined && { reason: result.reason }),
    operations: operations.length,
    ms,
  };
}

/** `raceguard check`. */
export function checkCommand(): Command {
  return new Command('check')
    .description(
      'check recorded histories: linearizability against a model, or isolation anomalies in transactional histories. One verdict per file (exit 0 all fine, 1 any not, 2 error or unknown)',
    )
    .argument('<files...>', 'history files')
    .addOption(
      new Option(
        '--format <format>',
        "the files' format (default: json, as raceguard run --history writes it)",
      ).choices(['jepsen-etcd', 'porcupine-kv', 'json']),
    )
    .addOption(
      new Option(
        '--model <model>',
        'the object (jepsen-etcd: register or cas-register; porcupine-kv: kv; json: any, default the model the file records); refused when the operations are not its operations',
      ).choices(MODEL_NAMES),
    )
    .addOption(
      new Option('--workload <workload>', 'for JSON transactional histories').choices([
        'list-append',
        'rw-register',
      ]),
    )
    .option(
      '--timeout-ms <ms>',
      'time budget per file; past it the verdict is unknown',
      integer(1),
      10_000,
    )
    .option(
      '--explain-ms <ms>',
      'after a not-linearizable verdict, time to find the shortest failing prefix (default 100; with --html, --timeout-ms)',
      integer(0),
    )
    .option(
      '--max-memory-mb <mb>',
      'memory budget of a linearizability search; past it the verdict is unknown (memory)',
      integer(1),
      512,
    )
    .option('--html <dir>', 'write one self-contained HTML page per file into this directory')
    .option(
      '--json',
      'print { "results": [ { "file", "model", "verdict", "reason"?, "operations", "ms", "anomalies"? } ] }',
    )
    .action(async (files: string[], options: CheckOptions & { json?: boolean }) => {
      if (
        options.format === 'jepsen-etcd' &&
        options.model !== undefined &&
        !['register', 'cas-register'].includes(options.model)
      ) {
        throw new Error(`--format jepsen-etcd records a register, not ${options.model}`);
      }
      if (
        options.format === 'porcupine-kv' &&
        options.model !== undefined &&
        options.model !== 'kv'
      ) {
        throw new Error(`--format porcupine-kv records the kv model, not ${options.model}`);
      }
      if (options.html !== undefined) await mkdir(options.html, { recursive: true });
      const results: CheckFileResult[] = [];
      // One file that cannot be checked does not hide the others' verdicts.
      for (const file of files) {
        try {
          results.push(await checkFile(file, options));
        } catch (error) {
          results.push({
            file,
            model: options.model ?? '-',
            verdict: 'error',
            error: messageOf(error),
            operations: 0,
            ms: 0,
          });
          if (options.json !== true)
            process.stderr.write(`raceguard: ${file}: ${messageOf(error)}\n`);
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
              r.verdict === 'error'
                ? `error: ${r.error ?? ''}`
                : r.verdict === 'unknown'
                  ? `unknown (${r.reason === 'memory' ? 'memory budget' : 'time budget'} ran out)`
                  : r.anomalies === undefined || r.verdict === 'no-anomalies'
                    ? r.verdict
                    : `${r.verdict}: ${Object.entries(r.anomalies)
                        .map(([type, n]) => `${type} ×${n}`)
                        .join(', ')}`,
              r.ms.toFixed(1),
            ]),
          )}\n`,
        );
      }
      process.exitCode = results.some((r) => r.verdict === 'unknown' || r.verdict === 'error')
        ? 2
        : results.some((r) => r.verdict === 'not-linearizable' || r.verdict === 'anomalies')
          ? 1
          : 0;
    });
}
