import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AbortedError,
  InvalidArgumentError,
  RetryExhaustedError,
} from '../../packages/raceguard/src/core/errors.js';
import { backoffDelay } from '../../packages/raceguard/src/core/backoff.js';
import { retry } from '../../packages/raceguard/src/core/retry.js';
import { sleep } from '../../packages/raceguard/src/core/abort.js';

describe('backoffDelay', () => {
  it('draws from [0, min(max, base * 2^(n-1))) with full jitter', () => {
    assert.equal(backoffDelay(1, { baseDelayMs: 10, random: () => 0.999 }) < 10, true);
    assert.equal(backoffDelay(4, { baseDelayMs: 10, random: () => 0.5 }), 40);
    assert.equal(backoffDelay(30, { baseDelayMs: 10, maxDelayMs: 100, random: () => 0.5 }), 50);
    assert.equal(backoffDelay(3, { random: () => 0 }), 0);
  });

  it('rejects bad input', () => {
    assert.throws(() => backoffDelay(0), InvalidArgumentError);
    assert.throws(() => backoffDelay(1, { baseDelayMs: Number.NaN }), /finite number/);
  });
});

describe('retry', () => {
  it('retries retryable failures and returns the first success', async () => {
    const delays: number[] = [];
    let calls = 0;
    const result = await retry(
      ({ attempt }) => {
        calls++;
        return attempt < 3 ? Promise.reject(new Error(`fail ${attempt}`)) : Promise.resolve('ok');
      },
      { baseDelayMs: 1, random: () => 0.5, onRetry: (e) => delays.push(e.delayMs) },
    );
    assert.equal(result, 'ok');
    assert.equal(calls, 3);
    assert.deepEqual(delays, [0.5, 1]);
  });

  it('gives up with attempts, elapsed time and the last cause', async () => {
    const error = await retry(({ attempt }) => Promise.reject(new Error(`boom ${attempt}`)), {
      maxAttempts: 3,
      baseDelayMs: 0,
    }).catch((e: unknown) => e);
    assert.ok(error instanceof RetryExhaustedError);
    assert.equal(error.attempts, 3);
    assert.equal(error.reason, 'max-attempts');
    assert.equal(error.code, 'RACEGUARD_RETRY_EXHAUSTED');
    assert.equal((error.cause as Error).message, 'boom 3');
    assert.ok(error.elapsedMs >= 0);
  });

  it('never retries a non-retryable failure', async () => {
    let calls = 0;
    const fatal = new Error('fatal');
    await assert.rejects(
      retry(
        () => {
          calls++;
          return Promise.reject(fatal);
        },
        { isRetryable: (e) => e !== fatal },
      ),
      (e) => e === fatal,
    );
    assert.equal(calls, 1);
  });

  it('stops at the deadline', async () => {
    const error = await retry(() => Promise.reject(new Error('x')), {
      maxAttempts: 100,
      baseDelayMs: 50,
      deadlineMs: 60,
      random: () => 0.99,
    }).catch((e: unknown) => e);
    assert.ok(error instanceof RetryExhaustedError);
    assert.equal(error.reason, 'deadline');
    assert.ok(error.attempts < 100);
  });

  it('aborts the wait between attempts', async () => {
    const controller = new AbortController();
    const pending = retry(() => Promise.reject(new Error('x')), {
      baseDelayMs: 10_000,
      random: () => 0.99,
      signal: controller.signal,
      onRetry: () => setImmediate(() => controller.abort(new Error('shutdown'))),
    });
    await assert.rejects(
      pending,
      (e) => e instanceof AbortedError && (e.cause as Error).message === 'shutdown',
    );
  });

  it('validates its options', async () => {
    await assert.rejects(
      retry(() => Promise.resolve(1), { maxAttempts: 0 }),
      /maxAttempts must be a positive/,
    );
    await assert.rejects(
      retry(() => Promise.resolve(1), { maxAttempts: 1.5 }),
      InvalidArgumentError,
    );
  });
});

describe('sleep', () => {
  it('removes its abort listener when it resolves', async () => {
    const controller = new AbortController();
    let added = 0;
    let removed = 0;
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = (...args: Parameters<typeof add>) => {
      added++;
      add(...args);
    };
    signal.removeEventListener = (...args: Parameters<typeof remove>) => {
      removed++;
      remove(...args);
    };
    await sleep(1, signal);
    assert.equal(added, 1);
    assert.equal(removed, 1);
  });

  it('rejects at once with an already aborted signal', async () => {
    await assert.rejects(sleep(10_000, AbortSignal.abort(new Error('gone'))), AbortedError);
  });
});
