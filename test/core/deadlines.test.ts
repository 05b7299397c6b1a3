/**
 * The deadlines of `within` share one timer (a min-heap in core/deadline.ts)
 * instead of one timer per round trip. Attacked here from a printed seed:
 * hundreds of calls with random deadlines, some answered before their
 * deadline, some after, some never, added and settled in random order.
 * Every call that outlives its deadline must be given up no earlier than
 * 1 ms before it and soon after it, in deadline order; every call answered
 * in time must get its answer; and once nothing waits, the timer must be
 * gone (an idle process exits).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { within } from '../../packages/raceguard/src/core/deadline.js';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';

const SEED = Number(process.env.RACEGUARD_SEED ?? Date.now() % 100_000);

/** How late a given-up call may be, on a loaded 2-core CI machine. */
const LATE_MS = 250;

describe('within: one timer for every pending deadline', { timeout: 60_000 }, () => {
  it(`gives up each late call at its deadline, never early, in deadline order (seed ${SEED})`, async () => {
    const random = createRandom(SEED);
    const calls = 400;
    const started = performance.now();
    const gaveUp: { index: number; deadline: number; at: number }[] = [];
    const answered: number[] = [];
    const work: Promise<void>[] = [];
    for (let index = 0; index < calls; index++) {
      // Deadlines 5..300 ms away, some calls answered before theirs, some
      // after, some never; a few calls join late, so the earliest deadline
      // keeps changing under the armed timer.
      if (random.next() < 0.1) await new Promise((resolve) => setTimeout(resolve, 1));
      const deadline = performance.now() + 5 + Math.floor(random.next() * 295);
      const fate = random.next();
      const answerIn =
        fate < 0.4
          ? Math.max(0, deadline - performance.now() - 30) * random.next()
          : fate < 0.8
            ? deadline - performance.now() + 40
            : Number.POSITIVE_INFINITY;
      const call = new Promise<number>((resolve) => {
        if (Number.isFinite(answerIn)) setTimeout(() => resolve(index), answerIn);
      });
      work.push(
        within(call, { deadline, timeout: () => new Error(`late ${index}`) }).then(
          (value) => {
            assert.equal(value, index);
            answered.push(index);
          },
          (error: Error) => {
            assert.equal(error.message, `late ${index}`);
            gaveUp.push({ index, deadline, at: performance.now() });
          },
        ),
      );
    }
    await Promise.all(work);
    assert.equal(answered.length + gaveUp.length, calls);
    assert.ok(gaveUp.length > calls / 3, `only ${gaveUp.length} calls outlived their deadline`);
    for (const { index, deadline, at } of gaveUp) {
      assert.ok(at >= deadline - 1, `call ${index} given up ${deadline - at} ms early`);
      assert.ok(at <= deadline + LATE_MS, `call ${index} given up ${at - deadline} ms late`);
    }
    // Given up in the order of their deadlines (ties within the 1 ms tolerance).
    for (let i = 1; i < gaveUp.length; i++) {
      const before = gaveUp[i - 1] as { deadline: number };
      const now = gaveUp[i] as { deadline: number };
      assert.ok(
        now.deadline >= before.deadline - 1,
        `deadline ${now.deadline - started} given up after ${before.deadline - started}`,
      );
    }
  });

  it('leaves no timer behind: a process whose calls all answered exits at once', () => {
    // A 10-minute deadline on a call that answers: if its timer outlived the
    // answer, the child would wait ten minutes (and be killed at 20 s).
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { within } from ${JSON.stringify(new URL('../../packages/raceguard/src/core/deadline.ts', import.meta.url).pathname)};
         const deadline = performance.now() + 600_000;
         await Promise.all(Array.from({ length: 50 }, (_, i) =>
           within(new Promise((r) => setTimeout(r, i)), { deadline: deadline + i, timeout: () => new Error('late') })));
         console.log('answered');`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(child.stdout.trim(), 'answered', child.stderr);
    assert.equal(child.status, 0, `exit ${String(child.status)} (signal ${String(child.signal)})`);
  });
});
