/**
 * The linearizability checker against ground truth it did not choose: the
 * 70 Jepsen etcd histories and the 6 key-value histories of Porcupine's test
 * data (../shared/histories), every verdict as expected; small histories
 * whose verdicts are plain by hand (including unknown outcomes); the time
 * budget; bad input.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { findHistories } from '../helpers/histories.js';
import {
  HistoryFormatError,
  checkLinearizable,
  kvModel,
  parseJepsenRegister,
  parsePorcupineKv,
  registerModel,
  counterModel,
  setModel,
  queueModel,
  type CounterInput,
  type SetInput,
  type QueueInput,
  type Operation,
  type RegisterInput,
  type RegisterOutput,
} from '../../packages/raceguard/src/check/index.js';

const ROOT = findHistories();
const expected = (
  ROOT === undefined
    ? { etcd: {}, kv: {} }
    : JSON.parse(readFileSync(`${ROOT}expected.json`, 'utf8'))
) as { etcd: Record<string, boolean>; kv: Record<string, boolean> };
const noHistories =
  ROOT === undefined
    ? 'no shared/histories found (set RACEGUARD_HISTORIES to the porcupine folder)'
    : false;

describe('checkLinearizable', () => {
  it('reproduces every verdict of the 70 Jepsen etcd histories', { skip: noHistories }, () => {
    const wrong: string[] = [];
    for (const [file, linearizable] of Object.entries(expected.etcd)) {
      const operations = parseJepsenRegister(readFileSync(`${ROOT as string}etcd/${file}`, 'utf8'));
      const { verdict } = checkLinearizable(registerModel, operations, { timeoutMs: 60_000 });
      if (verdict !== (linearizable ? 'linearizable' : 'not-linearizable'))
        wrong.push(`${file}: ${verdict}`);
    }
    assert.equal(Object.keys(expected.etcd).length, 70);
    assert.deepEqual(wrong, []);
  });

  it(
    'reproduces every verdict of the key-value histories, partitioned by key',
    { skip: noHistories },
    () => {
      for (const [file, linearizable] of Object.entries(expected.kv)) {
        const operations = parsePorcupineKv(readFileSync(`${ROOT as string}kv/${file}`, 'utf8'));
        const result = checkLinearizable(kvModel, operations, { timeoutMs: 60_000 });
        assert.equal(result.verdict, linearizable ? 'linearizable' : 'not-linearizable', file);
        if (!linearizable)
          assert.ok((result.violating?.length ?? 0) > 0, 'the failing key is named');
      }
    },
  );

  const op = (
    client: number,
    input: RegisterInput,
    output: RegisterOutput | undefined,
    call: number,
    ret: number,
  ): Operation<RegisterInput, RegisterOutput> => ({ client, input, output, call, return: ret });

  it('small histories, by hand: a stale read after a completed write is caught; overlapping ones are fine', () => {
    const write = op(1, { op: 'write', value: 1 }, null, 0, 10);
    // The read starts after the write completed and sees nothing: not linearizable.
    assert.equal(
      checkLinearizable(registerModel, [write, op(2, { op: 'read' }, null, 11, 20)]).verdict,
      'not-linearizable',
    );
    // The same read overlapping the write may come first.
    assert.equal(
      checkLinearizable(registerModel, [write, op(2, { op: 'read' }, null, 5, 20)]).verdict,
      'linearizable',
    );
    // A lost update: two cas from 0 both succeed.
    const lost = [
      op(1, { op: 'write', value: 0 }, null, 0, 1),
      op(2, { op: 'cas', from: 0, to: 1 }, true, 2, 10),
      op(3, { op: 'cas', from: 0, to: 2 }, true, 3, 11),
    ];
    assert.equal(checkLinearizable(registerModel, lost).verdict, 'not-linearizable');
  });

  it('an operation of unknown outcome may take effect late, or never', () => {
    const unknownWrite = op(1, { op: 'write', value: 7 }, undefined, 0, Number.POSITIVE_INFINITY);
    for (const seen of [null, 7]) {
      assert.equal(
        checkLinearizable(registerModel, [unknownWrite, op(2, { op: 'read' }, seen, 5, 6)]).verdict,
        'linearizable',
        `a read of ${String(seen)}`,
      );
    }
    // Seen, then unseen: it cannot be undone.
    assert.equal(
      checkLinearizable(registerModel, [
        unknownWrite,
        op(2, { op: 'read' }, 7, 5, 6),
        op(2, { op: 'read' }, null, 7, 8),
      ]).verdict,
      'not-linearizable',
    );
  });

  it('gives up with "unknown" when the time budget runs out', () => {
    // 30 concurrent writes and a read of a value nobody wrote: refuting it means trying every
    // subset of the writes, far more than 50 ms of work.
    const writes = Array.from({ length: 30 }, (_, i) =>
      op(i, { op: 'write', value: i + 1 }, null, 0, 100),
    );
    const started = performance.now();
    const impossible = checkLinearizable(
      registerModel,
      [...writes, op(99, { op: 'read' }, 999, 0, 100)],
      { timeoutMs: 50 },
    );
    assert.equal(impossible.verdict, 'unknown');
    assert.ok(performance.now() - started < 2000, 'bounded by the budget');
    // The same shape with a possible read is decided at once.
    assert.equal(
      checkLinearizable(registerModel, [...writes, op(99, { op: 'read' }, 30, 0, 100)], {
        timeoutMs: 50,
      }).verdict,
      'linearizable',
    );
  });

  it('gives up with "unknown" (memory) when the table of configurations would outgrow its budget', () => {
    // The same impossible read: every subset of 30 writes is a configuration.
    const writes = Array.from({ length: 30 }, (_, i) =>
      op(i, { op: 'write', value: i + 1 }, null, 0, 100),
    );
    const history = [...writes, op(99, { op: 'read' }, 999, 0, 100)];
    const capped = checkLinearizable(registerModel, history, { timeoutMs: 60_000, maxMemoryMb: 4 });
    // Without the memory budget this search would run its whole minute and say 'time'.
    assert.deepEqual(capped, { verdict: 'unknown', reason: 'memory' });
    assert.deepEqual(checkLinearizable(registerModel, history, { timeoutMs: 50 }), {
      verdict: 'unknown',
      reason: 'time',
    });
  });

  it('the verdict comes without its explanation when explainMs is 0, and with it by default', () => {
    const history = [
      op(1, { op: 'write', value: 1 }, null, 0, 10),
      op(2, { op: 'read' }, 1, 20, 30),
      op(3, { op: 'write', value: 2 }, null, 40, 50),
      op(4, { op: 'read' }, 1, 60, 70),
      op(5, { op: 'read' }, 2, 80, 90),
    ];
    const bare = checkLinearizable(registerModel, history, { explainMs: 0 });
    assert.equal(bare.verdict, 'not-linearizable');
    assert.equal(bare.minimalPrefix, undefined);
    const explained = checkLinearizable(registerModel, history);
    assert.equal(explained.verdict, 'not-linearizable');
    assert.equal(explained.culprit?.call, 60);
    assert.equal(explained.minimalPrefix?.length, 4);
  });

  it('counter, set and queue models: a lost increment, a vanished member and a dequeue out of order are caught', () => {
    const at = <I, O>(input: I, output: O | undefined, call: number, ret: number) => ({
      client: call,
      input,
      output,
      call,
      return: ret,
    });
    // Two adds of 1 completed, then a read of 1: an increment was lost.
    const adds = [
      at<CounterInput, number | null>({ op: 'add', amount: 1 }, null, 0, 5),
      at<CounterInput, number | null>({ op: 'add', amount: 1 }, null, 1, 6),
    ];
    assert.equal(
      checkLinearizable(counterModel, [
        ...adds,
        at<CounterInput, number | null>({ op: 'read' }, 1, 7, 8),
      ]).verdict,
      'not-linearizable',
    );
    assert.equal(
      checkLinearizable(counterModel, [
        ...adds,
        at<CounterInput, number | null>({ op: 'read' }, 1, 4, 8),
      ]).verdict,
      'linearizable',
    );
    // A member read, then missing.
    const set = [
      at<SetInput, readonly string[] | null>({ op: 'add', value: 'a' }, null, 0, 1),
      at<SetInput, readonly string[] | null>({ op: 'read' }, ['a'], 2, 3),
      at<SetInput, readonly string[] | null>({ op: 'read' }, [], 4, 5),
    ];
    assert.equal(checkLinearizable(setModel, set).verdict, 'not-linearizable');
    assert.equal(checkLinearizable(setModel, set.slice(0, 2)).verdict, 'linearizable');
    // a enqueued before b completes: dequeuing b first is not FIFO; concurrently it is fine.
    const queue = (bCall: number) => [
      at<QueueInput, string | null>({ op: 'enqueue', value: 'a' }, null, 0, 1),
      at<QueueInput, string | null>({ op: 'enqueue', value: 'b' }, null, bCall, bCall + 1),
      at<QueueInput, string | null>({ op: 'dequeue' }, 'b', 3, 4),
    ];
    assert.equal(checkLinearizable(queueModel, queue(2)).verdict, 'not-linearizable');
    // b's enqueue overlapping a's: b may have gone first.
    assert.equal(
      checkLinearizable(queueModel, [
        at<QueueInput, string | null>({ op: 'enqueue', value: 'a' }, null, 0, 2),
        at<QueueInput, string | null>({ op: 'enqueue', value: 'b' }, null, 1, 2),
        at<QueueInput, string | null>({ op: 'dequeue' }, 'b', 3, 4),
      ]).verdict,
      'linearizable',
    );
  });

  it('refuses bad input with typed errors', () => {
    assert.throws(() => parseJepsenRegister('hello'), HistoryFormatError);
    assert.throws(
      () => parseJepsenRegister('INFO  jepsen.util - 1\t:ok\t:read\t1'),
      /completes nothing it invoked/,
    );
    assert.throws(() => parsePorcupineKv('{:process 1}'), HistoryFormatError);
    assert.throws(
      () =>
        checkLinearizable(registerModel, [
          { client: 1, input: { op: 'read' }, output: null, call: 5, return: 1 },
        ]),
      /call <= return/,
    );
    assert.throws(() => checkLinearizable(registerModel, [], { timeoutMs: 0 }), /timeoutMs/);
  });
});
