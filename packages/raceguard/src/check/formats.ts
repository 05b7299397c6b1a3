/**
 * Readers of recorded histories: Jepsen's etcd log lines and Porcupine's
 * key-value format, as they are. Times are the line numbers: the logs are
 * written in the order the events happened.
 */
import { InvalidArgumentError, RaceguardError } from '../core/errors.js';
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

/** Marks a completion of an operation that did not happen: it is left out. */
const DID_NOT_HAPPEN = Symbol('did not happen');

/** What one line of a history says. */
type LineEvent<I, O> =
  | { readonly process: string; readonly invoke: I }
  | {
      readonly process: string;
      /** The output, given the invocation's input; `undefined` for an unknown outcome. */
      readonly complete: (input: I) => O | undefined | typeof DID_NOT_HAPPEN;
    };

/**
 * Pair each process's invocation with its completion, line by line (times
 * are the line numbers). An unknown outcome, or an invocation never
 * completed, returns at `Infinity`.
 */
function pairLines<I, O>(
  text: string,
  readLine: (line: string, lineNumber: number) => LineEvent<I, O>,
): Operation<I, O>[] {
  if (typeof text !== 'string') throw new InvalidArgumentError('text', 'a string', text);
  const open = new Map<string, { input: I; call: number }>();
  const operations: Operation<I, O>[] = [];
  let time = 0;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const event = readLine(line, index + 1);
    time++;
    if ('invoke' in event) {
      open.set(event.process, { input: event.invoke, call: time });
      continue;
    }
    const invoked = open.get(event.process);
    if (invoked === undefined) {
      throw new HistoryFormatError(
        index + 1,
        `process ${event.process} completes nothing it invoked`,
      );
    }
    open.delete(event.process);
    const output = event.complete(invoked.input);
    if (output === DID_NOT_HAPPEN) continue;
    operations.push({
      client: event.process,
      input: invoked.input,
      output,
      call: invoked.call,
      return: output === undefined ? Number.POSITIVE_INFINITY : time,
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
  return pairLines<RegisterInput, RegisterOutput>(text, (line, lineNumber) => {
    const match = JEPSEN.exec(line);
    if (match === null) throw new HistoryFormatError(lineNumber, 'not a Jepsen log line');
    const [, process, type, f, value] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    if (type === 'invoke') {
      if (f === 'read') return { process, invoke: { op: 'read' } };
      if (f === 'write')
        return { process, invoke: { op: 'write', value: atom(value, lineNumber) ?? 'nil' } };
      const pair = /^\[(\S+)\s+(\S+)\]$/.exec(value);
      if (pair === null) throw new HistoryFormatError(lineNumber, 'a cas value is [from to]');
      return {
        process,
        invoke: {
          op: 'cas',
          from: atom(pair[1] as string, lineNumber) ?? 'nil',
          to: atom(pair[2] as string, lineNumber) ?? 'nil',
        },
      };
    }
    return {
      process,
      complete: (input) => {
        if (type === 'info') return undefined;
        if (type === 'fail') return input.op === 'cas' ? false : DID_NOT_HAPPEN;
        if (input.op === 'read') return atom(value, lineNumber);
        return input.op === 'cas' ? true : null;
      },
    };
  });
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
  return pairLines<KvInput, string>(text, (line, lineNumber) => {
    const match = KV.exec(line);
    if (match === null) throw new HistoryFormatError(lineNumber, 'not a key-value history line');
    const [, process, type, f, key, , value] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
      string,
      string | undefined,
    ];
    if (type === 'invoke') {
      return {
        process,
        invoke:
          f === 'get' ? { op: 'get', key } : { op: f as 'put' | 'append', key, value: value ?? '' },
      };
    }
    return {
      process,
      complete: () =>
        type === 'info' ? undefined : type === 'fail' ? DID_NOT_HAPPEN : (value ?? ''),
    };
  });
}
