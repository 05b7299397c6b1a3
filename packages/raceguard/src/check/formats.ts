/**
 * Readers of recorded histories: Jepsen's etcd log lines and Porcupine's
 * key-value format, as they are. Times are the line numbers: the logs are
 * written in the order the events happened.
 */
import { RaceguardError } from '../core/errors.js';
import type { Operation } from './linearizability.js';
import type { KvInput, RegisterInput, RegisterOutput } from './models.js';

/** A history file could not be read; the line is named. */
export class HistoryFormatError extends RaceguardError {
  readonly line: number;
  constructor(line: number, message: string) {
    super('RACEGUARD_HISTORY_FORMAT', `line ${line}: ${message}`);
    this.line = line;
  }
}

const JEPSEN =
  /^\S+\s+jepsen\.util\s+-\s+(\S+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*)$/;

function atom(text: string, line: number): number | string | null {
  if (text === 'nil') return null;
  const number = Number(text);
  if (text !== '' && Number.isFinite(number)) return number;
  throw new HistoryFormatError(line, `cannot read the value ${JSON.stringify(text)}`);
}

/**
 * Read a Jepsen etcd log (`INFO  jepsen.util - <process>\t:<invoke|ok|fail|info>\t:<read|write|cas>\t<value>`)
 * into register operations: `:fail` reads and writes did not happen (left
 * out), a `:fail` cas did not take effect (output `false`), `:info` is an
 * unknown outcome (it may take effect at any time after its invocation).
 *
 * @example
 * ```ts
 * const operations = parseJepsenRegister(readFileSync('etcd_000.log', 'utf8'));
 * ```
 */
export function parseJepsenRegister(text: string): Operation<RegisterInput, RegisterOutput>[] {
  const open = new Map<string, { input: RegisterInput; call: number }>();
  const operations: Operation<RegisterInput, RegisterOutput>[] = [];
  const lines = text.split('\n');
  let time = 0;
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const match = JEPSEN.exec(line);
    if (match === null) throw new HistoryFormatError(index + 1, 'not a Jepsen log line');
    const [, process, type, f, value] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    time++;
    if (type === 'invoke') {
      let input: RegisterInput;
      if (f === 'read') input = { op: 'read' };
      else if (f === 'write') input = { op: 'write', value: atom(value, index + 1) ?? 'nil' };
      else {
        const pair = /^\[(\S+)\s+(\S+)\]$/.exec(value);
        if (pair === null) throw new HistoryFormatError(index + 1, 'a cas value is [from to]');
        input = {
          op: 'cas',
          from: atom(pair[1] as string, index + 1) ?? 'nil',
          to: atom(pair[2] as string, index + 1) ?? 'nil',
        };
      }
      open.set(process, { input, call: time });
      continue;
    }
    const invoked = open.get(process);
    if (invoked === undefined) {
      throw new HistoryFormatError(index + 1, `process ${process} completes nothing it invoked`);
    }
    open.delete(process);
    if (type === 'info') {
      operations.push({
        client: process,
        input: invoked.input,
        output: undefined,
        call: invoked.call,
        return: Number.POSITIVE_INFINITY,
      });
    } else if (type === 'fail') {
      if (invoked.input.op === 'cas') {
        operations.push({
          client: process,
          input: invoked.input,
          output: false,
          call: invoked.call,
          return: time,
        });
      }
    } else {
      const output: RegisterOutput =
        invoked.input.op === 'read'
          ? atom(value, index + 1)
          : invoked.input.op === 'cas'
            ? true
            : null;
      operations.push({
        client: process,
        input: invoked.input,
        output,
        call: invoked.call,
        return: time,
      });
    }
  }
  // Invoked and never completed: unknown outcome.
  for (const [process, invoked] of open) {
    operations.push({
      client: process,
      input: invoked.input,
      output: undefined,
      call: invoked.call,
      return: Number.POSITIVE_INFINITY,
    });
  }
  return operations;
}

const KV =
  /^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append), :key "((?:[^"\\]|\\.)*)", :value (nil|"((?:[^"\\]|\\.)*)")\}$/;

/**
 * Read Porcupine's key-value format (`{:process N, :type :invoke|:ok, :f :get|:put|:append, :key "k", :value "v"}`).
 *
 * @example
 * ```ts
 * const operations = parsePorcupineKv(readFileSync('c10-ok.txt', 'utf8'));
 * ```
 */
export function parsePorcupineKv(text: string): Operation<KvInput, string>[] {
  const open = new Map<string, { input: KvInput; call: number }>();
  const operations: Operation<KvInput, string>[] = [];
  let time = 0;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const match = KV.exec(line);
    if (match === null) throw new HistoryFormatError(index + 1, 'not a key-value history line');
    const [, process, type, f, key, , value] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
      string,
      string | undefined,
    ];
    time++;
    if (type === 'invoke') {
      const input: KvInput =
        f === 'get' ? { op: 'get', key } : { op: f as 'put' | 'append', key, value: value ?? '' };
      open.set(process, { input, call: time });
      continue;
    }
    const invoked = open.get(process);
    if (invoked === undefined) {
      throw new HistoryFormatError(index + 1, `process ${process} completes nothing it invoked`);
    }
    open.delete(process);
    if (type === 'fail') continue;
    operations.push({
      client: process,
      input: invoked.input,
      output: type === 'info' ? undefined : (value ?? ''),
      call: invoked.call,
      return: type === 'info' ? Number.POSITIVE_INFINITY : time,
    });
  }
  for (const [process, invoked] of open) {
    operations.push({
      client: process,
      input: invoked.input,
      output: undefined,
      call: invoked.call,
      return: Number.POSITIVE_INFINITY,
    });
  }
  return operations;
}
