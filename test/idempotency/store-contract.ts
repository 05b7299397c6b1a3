/**
 * The behaviour every idempotency store must have, run against the memory,
 * PostgreSQL and Redis stores on real servers.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  IdempotencyClaimLostError,
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
} from '../../packages/raceguard/src/idempotency/errors.js';
import {
  claimIdempotency,
  idempotent,
} from '../../packages/raceguard/src/idempotency/idempotent.js';
import type { IdempotencyStore } from '../../packages/raceguard/src/idempotency/store.js';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';

const newKey = (): string => randomBytes(8).toString('hex');

/**
 * `construct` builds a store with the same options as `store` plus
 * `extra` (for the check of option names at construction).
 */
export function storeContract(
  store: () => IdempotencyStore,
  construct: (extra: Record<string, unknown>) => IdempotencyStore,
): void {
  it('refuses, at construction, an option it does not have (a misspelling is not ignored)', () => {
    for (const misspelt of ['tabel', 'prefx', 'sweepEvry']) {
      assert.throws(
        () => construct({ [misspelt]: 'x' }),
        (error: unknown) =>
          error instanceof InvalidArgumentError && error.message.includes(`options.${misspelt}`),
        misspelt,
      );
    }
  });

  it('100 concurrent identical calls: the handler runs once, the rest conflict; then every retry replays', async () => {
    for (let trial = 0; trial < 5; trial += 1) {
      const key = newKey();
      let runs = 0;
      const outcomes = await Promise.allSettled(
        Array.from({ length: 100 }, () =>
          idempotent(store(), { scope: 'tenant-a', key, payload: { amount: 5 } }, async () => {
            runs += 1;
            await delay(30);
            return { charged: 5, run: runs };
          }),
        ),
      );
      assert.equal(runs, 1, `trial ${trial}`);
      const fulfilled = outcomes.filter((o) => o.status === 'fulfilled');
      const rejected = outcomes.filter((o) => o.status === 'rejected');
      for (const o of rejected)
        assert.ok(o.reason instanceof IdempotencyInFlightError, String(o.reason));
      assert.ok(fulfilled.length >= 1);
      for (const o of fulfilled) assert.deepEqual(o.value.value, { charged: 5, run: 1 });
      const retry = await idempotent(
        store(),
        { scope: 'tenant-a', key, payload: { amount: 5 } },
        () => {
          runs += 1;
          return { charged: 5, run: runs };
        },
      );
      assert.deepEqual(retry, { value: { charged: 5, run: 1 }, replayed: true });
      assert.equal(runs, 1);
    }
  });

  it('100 concurrent first claims of one key, 10 rounds: exactly one is claimed, the rest see it in progress, none errs', async () => {
    for (let round = 0; round < 10; round += 1) {
      const key = newKey();
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          store().claim({
            scope: 'first-claims',
            key,
            fingerprint: 'f',
            owner: `owner-${i}`,
            leaseMs: 30_000,
            ttlMs: 60_000,
          }),
        ),
      );
      assert.equal(results.filter((r) => r.kind === 'claimed').length, 1, `round ${round}`);
      assert.ok(results.every((r) => r.kind === 'claimed' || r.kind === 'in-progress'));
    }
  });

  it("'wait' mode: concurrent duplicates receive the first result", async () => {
    const key = newKey();
    let runs = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        idempotent(store(), { scope: 's', key, concurrent: 'wait', waitMs: 5000 }, async () => {
          runs += 1;
          await delay(50);
          return 'done';
        }),
      ),
    );
    assert.equal(runs, 1);
    assert.equal(results.filter((r) => !r.replayed).length, 1);
    assert.ok(results.every((r) => r.value === 'done'));
  });

  it("'wait' mode with waitMs 0 does not wait: a duplicate in flight conflicts at once, as a lock's waitMs 0 tries once", async () => {
    const key = newKey();
    let release: () => void = () => undefined;
    const first = idempotent(
      store(),
      { scope: 's', key, concurrent: 'wait', waitMs: 0 },
      () => new Promise<string>((resolve) => (release = () => resolve('done'))),
    );
    await delay(20);
    const startedAt = performance.now();
    await assert.rejects(
      idempotent(store(), { scope: 's', key, concurrent: 'wait', waitMs: 0 }, () => 'again'),
      IdempotencyInFlightError,
    );
    assert.ok(performance.now() - startedAt < 1000, 'it did not wait');
    release();
    assert.equal((await first).value, 'done');
  });

  it('the same key with another payload is refused and the stored result is not revealed', async () => {
    const key = newKey();
    await idempotent(store(), { scope: 's', key, payload: { amount: 5 } }, () => 'first');
    await assert.rejects(
      idempotent(store(), { scope: 's', key, payload: { amount: 6 } }, () => 'second'),
      IdempotencyKeyReusedError,
    );
  });

  it('scopes never share records: the same key runs once per scope', async () => {
    const key = newKey();
    const a = await idempotent(store(), { scope: 'tenant-a', key }, () => 'for a');
    const b = await idempotent(store(), { scope: 'tenant-b', key }, () => 'for b');
    assert.deepEqual([a.value, b.value, a.replayed, b.replayed], ['for a', 'for b', false, false]);
    const again = await idempotent(store(), { scope: 'tenant-b', key }, () => 'x');
    assert.deepEqual(again, { value: 'for b', replayed: true });
  });

  it('a handler that throws leaves nothing behind: the retry runs', async () => {
    const key = newKey();
    await assert.rejects(
      idempotent(store(), { scope: 's', key }, () => {
        throw new Error('provider down');
      }),
      /provider down/,
    );
    const retry = await idempotent(store(), { scope: 's', key }, () => 'ok');
    assert.deepEqual(retry, { value: 'ok', replayed: false });
  });

  it('results not stored by policy let the next request run again', async () => {
    const key = newKey();
    let runs = 0;
    const run = () =>
      idempotent(store(), { scope: 's', key, shouldStore: (v: number) => v < 500 }, () => {
        runs += 1;
        return 503;
      });
    await run();
    await run();
    assert.equal(runs, 2);
  });

  it('a crashed claim is reclaimable after its lease, never before, and resumes from its recovery point', async () => {
    const key = newKey();
    const options = { scope: 's', key, leaseMs: 300 };
    const crashed = await claimIdempotency<string>(store(), options);
    assert.equal(crashed.kind, 'execute');
    if (crashed.kind !== 'execute') return;
    await crashed.advance('charged');
    // Simulate the process dying: stop renewing without releasing.
    await crashed.markCompleted();
    await assert.rejects(claimIdempotency(store(), options), IdempotencyInFlightError);
    await delay(400);
    const resumed = await claimIdempotency<string>(store(), options);
    assert.equal(resumed.kind, 'execute');
    if (resumed.kind !== 'execute') return;
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.recoveryPoint, 'charged');
    await resumed.complete('receipt');
    // The crashed owner can no longer write.
    const late = await claimIdempotency<string>(store(), options);
    assert.deepEqual(late, { kind: 'replay', value: 'receipt' });
  });

  it('an owner whose claim was taken over cannot complete, renew, advance or abandon', async () => {
    const key = newKey();
    const options = { scope: 's', key, leaseMs: 200 };
    const first = await claimIdempotency<string>(store(), options);
    if (first.kind !== 'execute') return assert.fail('expected a claim');
    await first.markCompleted(); // stop renewing: the lease runs out
    await delay(300);
    const second = await claimIdempotency<string>(store(), options);
    if (second.kind !== 'execute') return assert.fail('expected a takeover');
    // The first owner wakes up (a paused process) and tries to write.
    const stale = { scope: 's', key, owner: first.owner };
    assert.equal(await store().complete({ ...stale, result: '"stale"', ttlMs: 60_000 }), false);
    assert.equal(await store().renew({ ...stale, leaseMs: 60_000 }), false);
    assert.equal(await store().advance({ ...stale, recoveryPoint: 'x' }), false);
    await store().abandon({ ...stale, keep: false });
    await second.complete('winner');
    const replay = await claimIdempotency<string>(store(), options);
    assert.deepEqual(replay, { kind: 'replay', value: 'winner' });
  });

  it('the heartbeat keeps a long handler’s claim alive past its lease', async () => {
    const key = newKey();
    let runs = 0;
    const slow = idempotent(store(), { scope: 's', key, leaseMs: 150 }, async ({ signal }) => {
      runs += 1;
      await delay(600);
      assert.equal(signal.aborted, false);
      return 'slow';
    });
    await delay(350);
    await assert.rejects(
      idempotent(store(), { scope: 's', key, leaseMs: 150 }, () => 'dup'),
      IdempotencyInFlightError,
    );
    assert.equal((await slow).value, 'slow');
    assert.equal(runs, 1);
  });

  it('abandon with keep frees the lease at once and keeps the recovery point', async () => {
    const key = newKey();
    const first = await claimIdempotency<string>(store(), { scope: 's', key });
    if (first.kind !== 'execute') return assert.fail('expected a claim');
    await first.advance('step-1');
    await first.abandon({ keep: true });
    await assert.rejects(first.complete('late'), IdempotencyClaimLostError);
    const next = await claimIdempotency<string>(store(), { scope: 's', key });
    if (next.kind !== 'execute') return assert.fail('expected a claim');
    assert.equal(next.recoveryPoint, 'step-1');
    await next.complete('done');
  });

  it('an expired record is gone: the key runs afresh', async () => {
    const key = newKey();
    await idempotent(store(), { scope: 's', key, ttlMs: 200, leaseMs: 100 }, () => 'old');
    await delay(300);
    const fresh = await idempotent(
      store(),
      { scope: 's', key, ttlMs: 200, leaseMs: 100 },
      () => 'new',
    );
    assert.deepEqual(fresh, { value: 'new', replayed: false });
  });
}
