/**
 * The clocks: property tests (fast-check) of the hybrid logical clock's
 * laws (monotonic whatever the physical clock does, past every timestamp it
 * received, close to physical time) and of the vector clock's (merge
 * commutative, associative, idempotent; compare consistent with merge and
 * increment); encodings that sort as timestamps; refused remote offsets and
 * overflows leave the clock unchanged; a restart never goes backwards; the
 * last-writer-wins register written from two nodes whose clocks run 300 ms
 * apart; the HTTP middlewares.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import fc from 'fast-check';
import {
  ClockFormatError,
  ClockHighWaterError,
  ClockOffsetError,
  ClockOverflowError,
  HybridLogicalClock,
  LamportClock,
  MAX_LOGICAL,
  VectorClock,
  compareHlc,
  fileHighWater,
  formatHlc,
  hlcFromBytes,
  hlcToBytes,
  parseHlc,
  receiveHeaders,
  stampHeaders,
  type HlcTimestamp,
} from '../../packages/raceguard/src/clock/index.js';
import { expressClock } from '../../packages/raceguard/src/http/clock.js';
import { fastifyClock } from '../../packages/raceguard/src/http/fastify.js';
import { honoClock } from '../../packages/raceguard/src/http/hono.js';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';

const T0 = 1_800_000_000_000;

/** A physical clock the test moves by hand. */
function manualClock(start = T0): { now: () => number; set(ms: number): void } {
  let time = start;
  return { now: () => time, set: (ms) => (time = ms) };
}

const timestamp = fc.record({
  wall: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  logical: fc.integer({ min: 0, max: MAX_LOGICAL }),
});

describe('HybridLogicalClock', () => {
  it('every timestamp is greater than the one before and than every one received; wall stays within the offset of physical time', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant('now' as const),
              drift: fc.integer({ min: -2000, max: 2000 }),
            }),
            fc.record({
              kind: fc.constant('receive' as const),
              drift: fc.integer({ min: -2000, max: 2000 }),
              ahead: fc.integer({ min: -5000, max: 500 }),
              logical: fc.integer({ min: 0, max: 100 }),
            }),
          ),
          { maxLength: 200 },
        ),
        (steps) => {
          const physical = manualClock();
          const clock = new HybridLogicalClock({ now: physical.now, maxOffsetMs: 500 });
          let previous: HlcTimestamp = { wall: 0, logical: 0 };
          let highestPhysical = T0;
          for (const step of steps) {
            // The physical clock jumps back and forth (NTP steps, a VM migration).
            physical.set(T0 + step.drift);
            highestPhysical = Math.max(highestPhysical, physical.now());
            let next: HlcTimestamp;
            if (step.kind === 'now') {
              next = clock.now();
            } else {
              const remote = { wall: physical.now() + step.ahead, logical: step.logical };
              next = clock.receive(remote);
              assert.ok(compareHlc(next, remote) > 0, 'past the remote timestamp');
            }
            assert.ok(compareHlc(next, previous) > 0, 'monotonic');
            assert.ok(next.wall <= highestPhysical + 500, 'within the offset of physical time');
            previous = next;
          }
        },
      ),
    );
  });

  it('a remote timestamp beyond maxOffsetMs is refused and the clock is unchanged', () => {
    const physical = manualClock();
    const clock = new HybridLogicalClock({ now: physical.now, maxOffsetMs: 500 });
    const before = clock.now();
    assert.throws(() => clock.receive({ wall: T0 + 501, logical: 0 }), ClockOffsetError);
    assert.deepEqual(clock.last, before);
    assert.ok(
      compareHlc(clock.receive({ wall: T0 + 500, logical: 7 }), { wall: T0 + 500, logical: 7 }) > 0,
    );
  });

  it('the logical counter never wraps: a spent millisecond moves to the next one, up to maxOffsetMs ahead; beyond it refuses, unchanged', () => {
    const clock = new HybridLogicalClock({ now: () => T0, maxOffsetMs: 2 });
    let last = clock.now();
    for (let i = 0; i < MAX_LOGICAL; i++) last = clock.now();
    assert.deepEqual(last, { wall: T0, logical: MAX_LOGICAL });
    assert.deepEqual(clock.now(), { wall: T0 + 1, logical: 0 });
    for (let i = 0; i < 2 * (MAX_LOGICAL + 1) - 1; i++) last = clock.now();
    assert.deepEqual(last, { wall: T0 + 2, logical: MAX_LOGICAL });
    assert.throws(() => clock.now(), ClockOverflowError);
    assert.throws(() => clock.receive({ wall: T0 + 2, logical: MAX_LOGICAL }), ClockOverflowError);
    assert.deepEqual(clock.last, last);
  });

  it('successive remote stamps each within maxOffsetMs of the last one received are refused once beyond it of the physical clock', () => {
    const physical = manualClock();
    const clock = new HybridLogicalClock({ now: physical.now, maxOffsetMs: 500 });
    clock.receive({ wall: T0 + 400, logical: 0 });
    const last = clock.last;
    assert.throws(() => clock.receive({ wall: T0 + 800, logical: 0 }), ClockOffsetError);
    assert.deepEqual(clock.last, last);
  });

  it('nemesis: restarts, bursts, remote stamps and a physical clock that advances by random steps (fast-check, seed printed on failure): never backwards, never beyond maxOffsetMs ahead', () => {
    const command = fc.oneof(
      fc.record({ kind: fc.constant('now' as const), count: fc.integer({ min: 1, max: 70_000 }) }),
      fc.record({
        kind: fc.constant('receive' as const),
        ahead: fc.integer({ min: -2000, max: 500 }),
        logical: fc.integer({ min: 0, max: MAX_LOGICAL }),
      }),
      fc.record({ kind: fc.constant('restart' as const) }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 300 }) }),
    );
    fc.assert(
      fc.property(
        fc.array(command, { maxLength: 30 }),
        fc.integer({ min: 1, max: 500 }),
        (commands, windowMs) => {
          const physical = manualClock();
          let saved: number | undefined;
          const store = { load: () => saved, save: (mark: number) => void (saved = mark) };
          const make = () =>
            new HybridLogicalClock({
              now: physical.now,
              maxOffsetMs: 500,
              highWaterWindowMs: windowMs,
              highWater: store,
            });
          let clock = make();
          let last = clock.now();
          /** Where the last restart resumed: only a restart may put the clock further ahead than maxOffsetMs. */
          let resumedAt = 0;
          const issued = (stamp: HlcTimestamp) => {
            assert.ok(compareHlc(stamp, last) > 0, `${formatHlc(stamp)} after ${formatHlc(last)}`);
            assert.ok(
              stamp.wall <= Math.max(physical.now() + 500, resumedAt),
              'within maxOffsetMs of the physical clock (or at the mark a restart resumed at)',
            );
            assert.ok(saved !== undefined && stamp.wall < saved, 'below the saved mark');
            last = stamp;
          };
          /**
           * Issue one stamp, which must pass `floor` (the last stamp, or a
           * received one that is later); a refusal is only allowed when a
           * stamp past `floor` would be beyond the offset bound (its
           * millisecond spent), and changes nothing.
           */
          const attempt = (issue: () => HlcTimestamp, floor: HlcTimestamp = last): boolean => {
            try {
              issued(issue());
              return true;
            } catch (error) {
              if (!(error instanceof ClockOverflowError)) throw error;
              const beyond = compareHlc(floor, last) > 0 ? floor : last;
              assert.ok(beyond.wall + 1 - physical.now() > 500, `refused at ${formatHlc(beyond)}`);
              assert.deepEqual(clock.last, last);
              return false;
            }
          };
          for (const c of commands) {
            if (c.kind === 'now') {
              for (let i = 0; i < c.count; i++) if (!attempt(() => clock.now())) break;
            } else if (c.kind === 'receive') {
              const remote = { wall: physical.now() + c.ahead, logical: c.logical };
              attempt(() => clock.receive(remote), remote);
            } else if (c.kind === 'tick') physical.set(physical.now() + c.ms);
            else {
              clock = make();
              resumedAt = clock.last.wall;
              const first = clock.now();
              assert.ok(
                // One window ahead of real time at most, or just past the last stamp when restarts come faster than the physical clock moves.
                first.wall <= Math.max(physical.now() + windowMs, last.wall + 1),
              );
              issued(first);
            }
          }
        },
      ),
      {
        numRuns: 200,
        // Found by this property: a remote stamp exactly maxOffsetMs ahead with its millisecond spent.
        examples: [[[{ kind: 'receive', ahead: 500, logical: MAX_LOGICAL }], 1]],
      },
    );
  });

  it('regression: quick restarts with a correct clock resume at most one window ahead (never climbing), peers accept the stamps, and a burst after a restart does not overflow', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'raceguard-hlc-')), 'mark');
    const physical = manualClock();
    const peer = new HybridLogicalClock({ now: physical.now, maxOffsetMs: 500 });
    let previous: HlcTimestamp | undefined;
    for (let restart = 0; restart < 9; restart++) {
      physical.set(T0 + restart * 5); // nine restarts within 45 ms
      const clock = new HybridLogicalClock({ now: physical.now, highWater: fileHighWater(path) });
      const first = clock.now();
      if (previous !== undefined) assert.ok(compareHlc(first, previous) > 0, 'never backwards');
      assert.ok(
        first.wall - physical.now() <= 250,
        `restart ${restart} resumed ${first.wall - physical.now()} ms ahead (window 250)`,
      );
      peer.receive(first); // within the peer's maxOffsetMs
      for (let i = 0; i < 200_000; i++) previous = clock.now(); // no ClockOverflowError
      assert.ok((previous as HlcTimestamp).wall - physical.now() <= 500);
    }
  });

  it('regression: an empty or garbled mark file is an error, not "no mark"; a window wider than maxOffsetMs is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'raceguard-hlc-'));
    for (const text of ['', '\n', 'garbage', '12x', '-5']) {
      writeFileSync(join(dir, 'mark'), text);
      assert.throws(
        () => new HybridLogicalClock({ highWater: fileHighWater(join(dir, 'mark')) }),
        (error: unknown) =>
          error instanceof ClockHighWaterError &&
          /not a wall time/.test(String((error.cause as Error).message)),
        JSON.stringify(text),
      );
    }
    assert.throws(
      () => new HybridLogicalClock({ maxOffsetMs: 500, highWaterWindowMs: 10_000 }),
      /options\.highWaterWindowMs must be at most options\.maxOffsetMs/,
    );
  });

  it('a restart never issues a timestamp below one issued before, even with the physical clock set back an hour', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'raceguard-hlc-')), 'mark');
    const physical = manualClock();
    const before = new HybridLogicalClock({
      now: physical.now,
      highWater: fileHighWater(path),
      highWaterWindowMs: 400,
    });
    let issued: HlcTimestamp = before.now();
    for (let ms = 0; ms < 5000; ms += 7) {
      physical.set(T0 + ms);
      issued = before.now();
    }
    // The process dies; the machine's clock is set back an hour before it restarts.
    physical.set(T0 - 3_600_000);
    const after = new HybridLogicalClock({ now: physical.now, highWater: fileHighWater(path) });
    assert.ok(compareHlc(after.now(), issued) > 0);
    // Control: without the mark, the restarted clock goes back an hour.
    assert.ok(compareHlc(new HybridLogicalClock({ now: physical.now }).now(), issued) < 0);
  });

  it('a high-water store that fails stops the clock with a typed error instead of risking a step back', () => {
    let fail = false;
    const physical = manualClock();
    const clock = new HybridLogicalClock({
      now: physical.now,
      highWaterWindowMs: 100,
      highWater: {
        load: () => undefined,
        save: () => {
          if (fail) throw new Error('disk full');
        },
      },
    });
    clock.now();
    fail = true;
    physical.set(T0 + 50);
    clock.now(); // below the saved mark: fine
    physical.set(T0 + 150);
    const error = (() => {
      try {
        clock.now();
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof ClockHighWaterError);
    assert.match(String((error.cause as Error).message), /disk full/);
  });

  it('string and binary forms round-trip and sort as the timestamps do', () => {
    fc.assert(
      fc.property(timestamp, timestamp, (a, b) => {
        assert.deepEqual(parseHlc(formatHlc(a)), { ...a });
        assert.deepEqual(hlcFromBytes(hlcToBytes(a)), { ...a });
        const order = Math.sign(compareHlc(a, b));
        const text = formatHlc(a) < formatHlc(b) ? -1 : formatHlc(a) > formatHlc(b) ? 1 : 0;
        assert.equal(text, order);
        assert.equal(Math.sign(Buffer.compare(hlcToBytes(a), hlcToBytes(b))), order);
      }),
    );
    for (const bad of ['', '019a', 'zzzzzzzzzzzzzzzz', '019A8E4C2B10000F', '019a8e4c2b10000f0']) {
      assert.throws(() => parseHlc(bad), ClockFormatError);
    }
    assert.throws(() => hlcFromBytes(new Uint8Array(7)), ClockFormatError);
  });

  it('last-writer-wins across two nodes whose clocks run 300 ms apart: wall time drops the causally later write, HLC keeps it', () => {
    const a = manualClock(T0 + 300); // node A runs 300 ms fast
    const b = manualClock(T0); // node B is right
    const clockA = new HybridLogicalClock({ now: a.now });
    const clockB = new HybridLogicalClock({ now: b.now });
    /** A register that keeps the write with the larger stamp. */
    const register = <S>(compare: (x: S, y: S) => number) => {
      let current: { value: string; stamp: S } | undefined;
      return {
        write(value: string, stamp: S) {
          if (current === undefined || compare(stamp, current.stamp) > 0)
            current = { value, stamp };
        },
        read: () => current,
      };
    };
    const byWall = register<number>((x, y) => x - y);
    const byHlc = register<HlcTimestamp>(compareHlc);
    // A writes the address; 100 ms later B reads it, and the user corrects it on B.
    byWall.write('old address', a.now());
    byHlc.write('old address', clockA.now());
    a.set(a.now() + 100);
    b.set(b.now() + 100);
    const seen = byHlc.read()?.stamp as HlcTimestamp;
    clockB.receive(seen); // B read A's write: its next stamp is after it
    byWall.write('corrected address', b.now());
    byHlc.write('corrected address', clockB.now());
    assert.equal(byWall.read()?.value, 'old address', 'wall-clock LWW lost the correction');
    assert.equal(byHlc.read()?.value, 'corrected address', 'HLC kept the causally later write');
  });

  it('headers: stamped on the way out, received on the way in; a malformed header leaves the clock unchanged', () => {
    const sender = new HybridLogicalClock({ now: () => T0 + 200 });
    const receiver = new HybridLogicalClock({ now: () => T0 });
    const headers: Record<string, string> = {};
    const sent = stampHeaders(sender, headers);
    const received = receiveHeaders(receiver, headers) as HlcTimestamp;
    assert.ok(compareHlc(received, sent) > 0);
    const before = receiver.last;
    assert.throws(() => receiveHeaders(receiver, { 'x-hlc': 'not a stamp' }), ClockFormatError);
    assert.deepEqual(receiver.last, before);
    assert.equal(receiveHeaders(receiver, {}), undefined);
  });

  it('bad options and arguments are refused', () => {
    assert.throws(() => new HybridLogicalClock({ maxOffsetMs: 0 }), /options\.maxOffsetMs/);
    assert.throws(() => new HybridLogicalClock({ offset: 5 } as never), /options\.offset/);
    const clock = new HybridLogicalClock();
    assert.throws(() => clock.receive({ wall: -1, logical: 0 }), InvalidArgumentError);
    assert.throws(() => clock.receive({ wall: 1, logical: 70_000 }), InvalidArgumentError);
    assert.throws(
      () => new HybridLogicalClock({ highWater: { load: () => -5, save: () => undefined } }),
      ClockHighWaterError,
    );
  });
});

describe('LamportClock', () => {
  it('ticks, sends and receives past the sender', () => {
    const a = new LamportClock();
    const b = new LamportClock({ start: 10 });
    const sent = a.send();
    assert.equal(sent, 1);
    assert.equal(b.receive(sent), 11);
    assert.equal(a.receive(b.send()), 13);
    assert.throws(() => a.receive(-1), InvalidArgumentError);
    assert.throws(
      () => new LamportClock({ start: Number.MAX_SAFE_INTEGER }).tick(),
      ClockOverflowError,
    );
  });
});

describe('VectorClock', () => {
  const node = fc.constantFrom('a', 'b', 'c', 'web-1', 'worker.2');
  const vector = fc
    .dictionary(node, fc.integer({ min: 0, max: 1000 }))
    .map((entries) => VectorClock.from(entries));

  it('merge is commutative, associative and idempotent; compare agrees with merge and increment', () => {
    fc.assert(
      fc.property(vector, vector, vector, node, (x, y, z, n) => {
        assert.equal(x.merge(y).compare(y.merge(x)), 'equal');
        assert.equal(
          x
            .merge(y)
            .merge(z)
            .compare(x.merge(y.merge(z))),
          'equal',
        );
        assert.equal(x.merge(x).compare(x), 'equal');
        assert.ok(['before', 'equal'].includes(x.compare(x.merge(y))));
        assert.equal(x.increment(n).compare(x), 'after');
        assert.equal(x.compare(x.increment(n)), 'before');
        const order = x.compare(y);
        const inverse = {
          before: 'after',
          after: 'before',
          equal: 'equal',
          concurrent: 'concurrent',
        };
        assert.equal(y.compare(x), inverse[order]);
        assert.equal(VectorClock.decode(x.encode()).compare(x), 'equal');
      }),
    );
  });

  it('a cart edited in two places: the versions are concurrent, and both are kept as siblings', () => {
    const base = VectorClock.empty().increment('web-1');
    const phone = base.increment('web-1'); // adds a book
    const laptop = base.increment('web-2'); // adds a lamp
    assert.equal(phone.compare(laptop), 'concurrent');
    const siblings = [phone, laptop];
    const resolved = phone.merge(laptop).increment('web-1'); // the union, written back
    assert.ok(siblings.every((s) => s.compare(resolved) === 'before'));
    assert.equal(resolved.encode(), 'web-1=3,web-2=1');
  });

  it('malformed encodings and node ids are refused', () => {
    for (const bad of [
      'a',
      'a=',
      'a=0',
      'a=01',
      'a=1,a=2',
      'a b=1',
      'a=1,',
      `${'x'.repeat(65)}=1`,
    ]) {
      assert.throws(() => VectorClock.decode(bad), ClockFormatError, bad);
    }
    assert.equal(VectorClock.decode('').encode(), '');
    assert.throws(() => VectorClock.empty().increment('a,b'), InvalidArgumentError);
    assert.deepEqual(VectorClock.from({ a: 2, b: 3 }).without(['a']).toJSON(), { b: 3 });
  });
});

describe('HTTP clock middleware', () => {
  const ahead = (ms: number) => formatHlc({ wall: Date.now() + ms, logical: 0 });

  it('Fastify: the response is stamped after the request; bad and far-ahead stamps get a 400', async () => {
    const clock = new HybridLogicalClock();
    const app = Fastify();
    await app.register(fastifyClock(clock));
    app.get('/', async () => ({ ok: true }));
    const request = ahead(100);
    const ok = await app.inject({ url: '/', headers: { 'x-hlc': request } });
    assert.equal(ok.statusCode, 200);
    assert.ok(compareHlc(parseHlc(String(ok.headers['x-hlc'])), parseHlc(request)) > 0);
    const before = clock.last;
    const bad = await app.inject({ url: '/', headers: { 'x-hlc': 'nope' } });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error, 'RACEGUARD_CLOCK_FORMAT');
    const far = await app.inject({ url: '/', headers: { 'x-hlc': ahead(60_000) } });
    assert.equal(far.json().error, 'RACEGUARD_CLOCK_OFFSET');
    assert.ok(compareHlc(clock.last, before) >= 0 && clock.last.wall < Date.now() + 1000);
    await app.close();
  });

  it('Express: stamped as the headers go out, after the handler', async () => {
    const clock = new HybridLogicalClock();
    let handlerStamp: HlcTimestamp | undefined;
    const app = express();
    app.use(expressClock(clock));
    app.get('/', (_req, res) => {
      handlerStamp = clock.now();
      res.json({ ok: true });
    });
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const ok = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-hlc': ahead(50) } });
      assert.equal(ok.status, 200);
      const stamp = parseHlc(ok.headers.get('x-hlc') ?? '');
      assert.ok(compareHlc(stamp, handlerStamp as HlcTimestamp) > 0);
      const far = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-hlc': ahead(60_000) } });
      assert.equal(far.status, 400);
      assert.equal(((await far.json()) as { error: string }).error, 'RACEGUARD_CLOCK_OFFSET');
    } finally {
      server.close();
    }
  });

  it('Hono: the same', async () => {
    const clock = new HybridLogicalClock();
    const app = new Hono();
    app.use('*', honoClock(clock));
    app.get('/', (c) => c.json({ ok: true }));
    const request = ahead(100);
    const ok = await app.request('/', { headers: { 'x-hlc': request } });
    assert.equal(ok.status, 200);
    assert.ok(compareHlc(parseHlc(ok.headers.get('x-hlc') ?? ''), parseHlc(request)) > 0);
    const bad = await app.request('/', { headers: { 'x-hlc': 'zz' } });
    assert.equal(bad.status, 400);
  });
});
